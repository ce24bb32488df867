using HyperNF.Control;
using HyperNF.Hypervisor;
using Xunit;

namespace HyperNF.Tests.Control;

public class XlConfigTests
{
    /// <summary>The example from the seed README, verbatim.</summary>
    private const string SeedConfig = """
        name="linux"
        kernel="PATH_TO_KERNEL"
        vcpus=1
        cpus="3"
        memory=1024
        pvh=1
        vif=["mac=00:10:00:00:00:02,bridge=xenbr", "type=nmif,bridge=valex:lx0,script=nmif-vale,mac=00:16:3e:af:12:00", "type=nmif,bridge=valey:ly0,script=nmif-vale,mac=00:17:3e:af:12:00"]
        disk=['file:./vmdisk.img,xvda,rw']
        extra='root=/dev/xvda1'
        """;

    private static XlConfigException Fail(string text, string file = "t.cfg") =>
        Assert.Throws<XlConfigException>(() => XlConfig.Parse(text, file));

    [Fact]
    public void Seed_example_parses()
    {
        var c = XlConfig.Parse(SeedConfig, "linux.cfg");
        Assert.Equal("linux", c.Name);
        Assert.Equal("linux.cfg", c.FileName);
        Assert.Equal(1, c.VCpus);
        Assert.Equal([3], c.Cpus.Single().ToArray());
        Assert.Equal(1024, c.MemoryMb);
        Assert.Equal(2, c.Vifs.Length);
        Assert.Equal(new VifConfig(1, "valex:lx0", "00:16:3e:af:12:00", false, "nmif-vale"), c.Vifs[0]);
        Assert.Equal(new VifConfig(2, "valey:ly0", "00:17:3e:af:12:00", false, "nmif-vale"), c.Vifs[1]);
        Assert.Equal("valex", c.Vifs[0].BridgeName);
        Assert.Equal("lx0", c.Vifs[0].PortName);
        Assert.Equal(0x00_12_af_3e_16_00UL, c.Vifs[0].MacValue);
        Assert.Null(c.Nf);
        Assert.Equal(DomainConfig.DefaultWeight, c.Weight);
        Assert.Equal(0, c.Cap);
        Assert.Null(c.IoModel);
        // kernel= without nf= is a VM domain (issue 11): the image and its command line (extra=).
        Assert.Equal("PATH_TO_KERNEL", c.Kernel);
        Assert.Equal("root=/dev/xvda1", c.CommandLine);
        // pvh, the xenbr vif, disk: one notice each, in file order, with file:line.
        Assert.Equal(3, c.Notices.Length);
        Assert.StartsWith("linux.cfg:6: pvh: ignored", c.Notices[0]);
        Assert.StartsWith("linux.cfg:7: vif: vif 0 (mac=00:10:00:00:00:02,bridge=xenbr) is not a netmap interface", c.Notices[1]);
        Assert.StartsWith("linux.cfg:8: disk: ignored", c.Notices[2]);
        Assert.All(c.Notices, n => Assert.DoesNotContain('\n', n));
    }

    [Fact]
    public void Kernel_with_nf_stays_a_thread_domain_and_kernel_is_a_notice()
    {
        var c = XlConfig.Parse("name=\"a\"\nkernel=\"k.elf\"\nextra=\"x\"\nnf=\"l2fwd\"\n", "a.cfg");
        Assert.Null(c.Kernel);
        Assert.Null(c.CommandLine);
        Assert.StartsWith("a.cfg:2: kernel: ignored (nf= makes this a thread domain", c.Notices[0]);
        Assert.StartsWith("a.cfg:3: extra: ignored", c.Notices[1]);
    }

    [Fact]
    public void HyperNF_settings_multi_line_lists_comments_and_semicolons()
    {
        var c = XlConfig.Parse("""
            # a firewall domain
            name = 'fw1'   # trailing comment
            vcpus = 2; memory = 256
            cpus = [ "0-1",   # vCPU 0
                     '2,3',   # vCPU 1
                   ]
            vif = [
                # ports in order
                "type=nmif,bridge=valex:fw0,mac=02:00:00:00:00:01",
                "type=nmif, bridge=valey:fw1",
            ]
            nf = "firewall"
            nf_args = "drop udp dport 53; allow all"
            weight = 512
            cap = 150
            io_model = "split"
            """, "fw.cfg");
        Assert.Equal("fw1", c.Name);
        Assert.Equal(2, c.VCpus);
        Assert.Equal(256, c.MemoryMb);
        Assert.Equal([0, 1], c.CpusOf(0).ToArray());
        Assert.Equal([2, 3], c.CpusOf(1).ToArray());
        Assert.Equal("valex:fw0", c.Vifs[0].Port);
        Assert.Equal("02:00:00:00:00:01", c.Vifs[0].Mac);
        Assert.False(c.Vifs[0].MacGenerated);
        Assert.Equal("valey:fw1", c.Vifs[1].Port);
        Assert.True(c.Vifs[1].MacGenerated);
        Assert.Equal(XlConfig.DefaultMac("fw1", 1), c.Vifs[1].Mac);
        Assert.Equal("firewall", c.Nf);
        Assert.Equal("drop udp dport 53; allow all", c.NfArgs);
        Assert.Equal(512, c.Weight);
        Assert.Equal(150, c.Cap);
        Assert.Equal(IoModel.Split, c.IoModel);
        Assert.Empty(c.Notices);
    }

    [Fact]
    public void Defaults()
    {
        var c = XlConfig.Parse("name=\"d\"\n", "d.cfg");
        Assert.Equal(1, c.VCpus);
        Assert.Empty(c.CpusOf(0));
        Assert.Single(c.Cpus);
        Assert.Equal(DomainConfig.DefaultMemoryMb, c.MemoryMb);
        Assert.Empty(c.Vifs);
        Assert.Equal(256, c.Weight);
        Assert.Equal(0, c.Cap);
        Assert.Null(c.IoModel);
        Assert.Null(c.Nf);
        Assert.Null(c.NfArgs);
        Assert.Empty(c.Notices);
    }

    [Theory]
    [InlineData("\"3\"", 1, "3")]
    [InlineData("3", 1, "3")] // a bare number is as good as a string in xl
    [InlineData("\"0-1\"", 2, "0,1|0,1")]
    [InlineData("\"0,2-3\"", 1, "0,2,3")]
    [InlineData("\" 0 , 2 - 3 \"", 1, "0,2,3")]
    [InlineData("\"0-7,^3\"", 1, "0,1,2,4,5,6,7")]
    [InlineData("\"all\"", 2, "|")]
    [InlineData("[\"0\",\"1\"]", 2, "0|1")]
    [InlineData("[\"5\"]", 3, "5||")] // past the end of the list: not pinned, as in xl
    [InlineData("[\"all\", \"4-5\"]", 2, "|4,5")]
    public void Cpu_lists(string value, int vcpus, string expected)
    {
        var c = XlConfig.Parse($"name=\"d\"\nvcpus={vcpus}\ncpus={value}\n", "d.cfg");
        Assert.Equal(vcpus, c.Cpus.Length);
        Assert.Equal(expected, string.Join("|", c.Cpus.Select(s => string.Join(",", s))));
    }

    [Fact]
    public void Crlf_line_ends_and_a_leading_bom_are_fine()
    {
        var c = XlConfig.Parse("\uFEFFname=\"d\"\r\nvcpus=2\r\nvif=[\r\n\"type=nmif,bridge=valex:a\",\r\n]\r\n", "d.cfg");
        Assert.Equal(("d", 2, "valex:a"), (c.Name, c.VCpus, c.Vifs[0].Port));
    }

    [Fact]
    public void Integers_may_be_quoted_or_hex()
    {
        var c = XlConfig.Parse("name=\"d\"\nvcpus=\"2\"\nmemory=0x100\nweight='1000'\n", "d.cfg");
        Assert.Equal(2, c.VCpus);
        Assert.Equal(256, c.MemoryMb);
        Assert.Equal(1000, c.Weight);
    }

    [Fact]
    public void Escapes_in_double_quotes_only()
    {
        var c = XlConfig.Parse("name=\"d\"\nnf=\"x\"\nnf_args=\"a \\\"b\\\" \\\\ c\"\n", "d.cfg");
        Assert.Equal("a \"b\" \\ c", c.NfArgs);
        c = XlConfig.Parse("name=\"d\"\nnf=\"x\"\nnf_args='a \\n b'\n", "d.cfg");
        Assert.Equal("a \\n b", c.NfArgs);
    }

    [Fact]
    public void Default_macs_are_stable_xen_oui_and_distinct()
    {
        string a0 = XlConfig.DefaultMac("linux", 0), a1 = XlConfig.DefaultMac("linux", 1), b0 = XlConfig.DefaultMac("linux2", 0);
        Assert.Equal(a0, XlConfig.DefaultMac("linux", 0));
        Assert.StartsWith("00:16:3e:", a0);
        Assert.Matches("^00:16:3e:[0-7][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}$", a0);
        Assert.NotEqual(a0, a1);
        Assert.NotEqual(a0, b0);
        // Pinned so a change to the derivation (which would change every domain's MACs) is noticed.
        Assert.Equal(a0, XlConfig.Parse("name=\"linux\"\nvif=[\"type=nmif,bridge=valex:p\"]", "x").Vifs[0].Mac);
        var c = XlConfig.Parse("name=\"linux\"\nvif=[\"bridge=xenbr\", \"type=nmif,bridge=valex:p\"]", "x");
        Assert.Equal(a1, c.Vifs[0].Mac); // the index counts ignored vifs too, as xl's devid does
    }

    [Fact]
    public void Vif_extras_give_notices()
    {
        var c = XlConfig.Parse("name=\"d\"\nvif=[\"type=nmif,bridge=valex:a,ip=10.0.0.1,vifname=v0,script=my-script\", \"bridge=valex:b\"]", "d.cfg");
        Assert.Single(c.Vifs);
        Assert.Contains(c.Notices, n => n.StartsWith("d.cfg:2: vif: vif 0: ip, vifname ignored", StringComparison.Ordinal));
        Assert.Contains(c.Notices, n => n.Contains("script 'my-script' is not run", StringComparison.Ordinal));
        Assert.Contains(c.Notices, n => n.Contains("vif 1 (bridge=valex:b) is not a netmap interface (type=nmif); ignored; add type=nmif to attach it to valex:b", StringComparison.Ordinal));
    }

    [Fact]
    public void Load_reads_a_file_and_names_it()
    {
        string dir = Path.Combine(Path.GetTempPath(), "hypernf-xl-" + Environment.ProcessId);
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "linux.cfg");
        try
        {
            File.WriteAllText(path, SeedConfig);
            var c = XlConfig.Load(path);
            Assert.Equal("linux", c.Name);
            Assert.Equal(path, c.FileName);
            File.WriteAllText(path, "name=\"linux\"\nvcpus=\"x\"\n");
            var e = Assert.Throws<XlConfigException>(() => XlConfig.Load(path));
            Assert.Equal($"{path}:2: vcpus: 'x' is not an integer (want 1..64)", e.Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Error_message_format()
    {
        var e = Fail("name=\"linux\"\n\n\nvcpus=\"x\"\n", "linux.cfg");
        Assert.Equal("linux.cfg:4: vcpus: 'x' is not an integer (want 1..64)", e.Message);
        Assert.Equal("linux.cfg", e.FileName);
        Assert.Equal(4, e.Line);
        Assert.Equal("vcpus", e.Key);
        Assert.Equal("'x' is not an integer (want 1..64)", e.Reason);
    }

    public static TheoryData<string, int, string?, string> Errors => new()
    {
        // syntax
        { "name \"linux\"", 1, "name", "missing '=' after the setting name, found '\"' (write name = VALUE)" },
        { "name=\"d\"\nvcpus\n", 2, "vcpus", "missing '=' after the setting name, found the end of the line (write vcpus = VALUE)" },
        { "name=\"d\"\nvcpus =\n", 2, "vcpus", "missing value after '='" },
        { "name=\"d\"\nnf=\"fire\nwall\"\n", 2, "nf", "unterminated string: no closing \" on this line" },
        { "name='d\n", 1, "name", "unterminated string: no closing ' on this line" },
        { "name=\"d\"\nvif=[ \"type=nmif,bridge=valex:a\",\n  \"type=nmif,bridge=valex:b\"\n", 2, "vif", "unterminated list: no ']' before the end of the file" },
        { "name=\"d\"\nvif=[ \"a\" \"b\" ]\n", 2, "vif", "expected ',' or ']' in the list, found '\"'" },
        { "name=\"d\"\nvif=[ [\"a\"] ]\n", 2, "vif", "lists cannot be nested" },
        { "name=\"d\"\nvif=[ \"a\",, ]\n", 2, "vif", "empty list element" },
        { "name=linux\n", 1, "name", "value 'linux' must be quoted: write name = \"linux\"" },
        { "name=\"d\" vcpus=2\n", 1, "name", "unexpected 'vcpus' after the value; put one setting per line" },
        { "name=\"d\"\n= 3\n", 2, null, "expected a setting like key = value, found '='" },
        { "name=\"d\"\nv-cpus = 3\n", 2, null, "'v-cpus' is not a setting name" },
        { "name=\"d\"\nvif += [\"a\"]\n", 2, "vif", "'+=' is not supported" },
        { "name=\"d\\q\"\n", 1, "name", "unknown escape '\\q' in a string" },
        // meaning
        { "name=\"d\"\nvcpus=1\nvcpus=2\n", 3, "vcpus", "set twice (first on line 2); keep one" },
        { "name=\"d\"\nvpcus=2\n", 2, "vpcus", "unknown setting (did you mean 'vcpus'?)" },
        { "name=\"d\"\nfrobnicate=2\n", 2, "frobnicate", "unknown setting; HyperNF reads name, vcpus" },
        { "vcpus=1\n", 1, "name", "missing; every domain needs one, e.g. name = \"linux\"" },
        { "# a comment\n\nvcpus=1\n", 1, "name", "missing; every domain needs one" },
        // limits: bounded work and bounded messages whatever the input
        { "name=\"d\"\n" + new string('k', 65) + " = 1\n", 2, null, $"setting name '{new string('k', 57)}...' is 65 characters long; setting names are at most 64" },
        { "name=\"d\"\n" + new string('k', 64) + " = 1\n", 2, new string('k', 64), "unknown setting; HyperNF reads" },
        { "name=\"d\"\nnf_args=\"" + new string('a', 70_000) + "\"\n", 2, null, "the line is 70010 characters long; a config line is at most 65536" },
        { "name=\"d\"\ncpus=\"" + string.Join(',', Enumerable.Repeat("0-3", 5000)) + "\"\n", 2, "cpus", "it has more than 4096 elements" },
        { "name=\"d\"\nvif=[" + string.Join(",\n", Enumerable.Range(0, 255).Select(i => $"\"type=nmif,bridge=valex:p{i}\"")) + "]\n", 2, "vif", "has 255 entries; a domain has at most 254 vifs" },
        { "name=\"d\"\nvcpus=\"" + new string('9', 1000) + "\"\n", 2, "vcpus", $"'{new string('9', 57)}...' is not an integer (want 1..64)" },
        { "name=\"a b\"\n", 1, "name", "'a b' is not a domain name" },
        { "name=[\"d\"]\n", 1, "name", "expected a single value, not a list" },
        { "name=\"d\"\nvcpus=0\n", 2, "vcpus", "0 is out of range (want 1..64)" },
        { "name=\"d\"\nvcpus=65\n", 2, "vcpus", "65 is out of range (want 1..64)" },
        { "name=\"d\"\nvcpus=\"two\"\n", 2, "vcpus", "'two' is not an integer (want 1..64)" },
        { "name=\"d\"\nvcpus=[1]\n", 2, "vcpus", "expected a single value, not a list (write vcpus = 1)" },
        { "name=\"d\"\nmemory=\"1G\"\n", 2, "memory", "'1G' is not an integer (want 1..1048576)" },
        { "name=\"d\"\nweight=0\n", 2, "weight", "0 is out of range (want 1..65535)" },
        { "name=\"d\"\nweight=65536\n", 2, "weight", "65536 is out of range (want 1..65535)" },
        { "name=\"d\"\ncap=101\n", 2, "cap", "101 is out of range (want 0..100; 0 means no cap)" },
        { "name=\"d\"\nvcpus=2\ncap=-1\n", 3, "cap", "-1 is out of range (want 0..200 for 2 vCPUs; 0 means no cap)" },
        { "name=\"d\"\ncpus=\"0-x\"\n", 2, "cpus", "'0-x' is not a CPU list: '0-x' is not a CPU number or a range A-B" },
        { "name=\"d\"\ncpus=\"3-1\"\n", 2, "cpus", "'3-1' is not a CPU list: the range '3-1' runs backwards; write 1-3" },
        { "name=\"d\"\ncpus=\"\"\n", 2, "cpus", "'' is not a CPU list: it is empty (want e.g." },
        { "name=\"d\"\ncpus=\"0,,1\"\n", 2, "cpus", "has an empty element" },
        { "name=\"d\"\ncpus=\"^1\"\n", 2, "cpus", "only excludes CPUs" },
        { "name=\"d\"\ncpus=\"1,^1\"\n", 2, "cpus", "leaves no CPU" },
        { "name=\"d\"\ncpus=\"nodes:0\"\n", 2, "cpus", "names NUMA nodes" },
        { "name=\"d\"\ncpus=\"5000\"\n", 2, "cpus", "not a CPU number or a range A-B of CPU numbers 0..4095" },
        { "name=\"d\"\nvcpus=2\ncpus=[\"0\",\n\"x\"]\n", 4, "cpus", "vCPU 1: 'x' is not a CPU list: 'x' is not a CPU number" },
        { "name=\"d\"\ncpus=[\"0\",\"1\"]\n", 2, "cpus", "has 2 entries for 1 vCPU(s); give at most one per vCPU, or raise vcpus" },
        { "name=\"d\"\ncpus=[]\n", 2, "cpus", "is an empty list" },
        { "name=\"d\"\nio_model=\"fast\"\n", 2, "io_model", "'fast' is not an I/O model (want hypercall, split or merge)" },
        { "name=\"d\"\nnf=\"\"\n", 2, "nf", "is empty" },
        { "name=\"d\"\nnf_args=\"x\"\n", 2, "nf_args", "is set but nf is not" },
        { "name=\"d\"\nvif=\"type=nmif,bridge=valex:a\"\n", 2, "vif", "expected a list (write vif = [ \"type=nmif,bridge=valex:lx0\" ])" },
        { "name=\"d\"\nvif=[1]\n", 2, "vif", "vif 0: expected a string like" },
        { "name=\"d\"\nvif=[\"type=nmif,mac=00:16:3e:00:00:01\"]\n", 2, "vif", "vif 0: no bridge; add bridge=BRIDGE:PORT, e.g. bridge=valex:lx0" },
        { "name=\"d\"\nvif=[\"type=nmif,bridge=valex\"]\n", 2, "vif", "vif 0: bridge=valex: 'valex' is not a VALE port name: write BRIDGE:PORT" },
        { "name=\"d\"\nvif=[\"type=nmif,bridge=xenbr:p0\"]\n", 2, "vif", "vif 0: bridge=xenbr:p0: 'xenbr' is not a VALE bridge name" },
        { "name=\"d\"\nvif=[\n\"type=nmif,bridge=valex:a,mac=00:16:3e:zz:00:00\"]\n", 3, "vif", "vif 0: mac '00:16:3e:zz:00:00' is not a MAC address (want six hex octets like 00:16:3e:af:12:00)" },
        { "name=\"d\"\nvif=[\"type=nmif,bridge=valex:a,mac=00:16:3e:00:00\"]\n", 2, "vif", "is not a MAC address" },
        { "name=\"d\"\nvif=[\"type=nmif,bridge=valex:a,mac=01:00:5e:00:00:01\"]\n", 2, "vif", "is a multicast address" },
        { "name=\"d\"\nvif=[\"type=nmif,bridge=valex:a,mac=00:00:00:00:00:00\"]\n", 2, "vif", "is all zeros" },
        { "name=\"d\"\nvif=[\"type=nmif,brige=valex:a\"]\n", 2, "vif", "vif 0: unknown setting 'brige'" },
        { "name=\"d\"\nvif=[\"type=nmif,bridge\"]\n", 2, "vif", "vif 0: 'bridge' is not KEY=VALUE" },
        { "name=\"d\"\nvif=[\"type=nmif,bridge=valex:a,bridge=valex:b\"]\n", 2, "vif", "vif 0: 'bridge' is given twice" },
        { "name=\"d\"\nvif=[\"type=nmif,bridge=valex:a\",\"type=nmif,bridge=valex:a\"]\n", 2, "vif", "vif 1: port valex:a is already used by vif 0" },
    };

    [Theory]
    [MemberData(nameof(Errors))]
    public void Errors_name_file_line_key_and_fix(string text, int line, string? key, string reason)
    {
        var e = Fail(text);
        Assert.Equal(line, e.Line);
        Assert.Equal(key, e.Key);
        Assert.Contains(reason, e.Reason);
        Assert.True(e.Message.Length < 1000, $"the message quotes at most a little of the config: {e.Message.Length} characters");
        string prefix = $"t.cfg:{line}: ";
        Assert.StartsWith(key is null ? prefix : prefix + key + ": ", e.Message);
    }
}
