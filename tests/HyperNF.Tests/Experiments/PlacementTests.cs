using HyperNF.Bench;
using Xunit;

namespace HyperNF.Tests.Experiments;

/// <summary>Where the demo and the experiments put their threads, for machines of 1 to 128 CPUs.</summary>
public class PlacementTests
{
    [Fact]
    public void Two_cores_give_the_sender_core_0_and_the_nf_core_1()
    {
        var p = Placement.For(2);
        Assert.Equal(0, p.TxCpu);
        Assert.Equal(1, p.RxCpu);
        Assert.Equal([1], p.NfCpus);
        Assert.Equal([0], p.BackendCpus);
    }

    [Fact]
    public void Three_cores_give_the_nf_a_core_of_its_own()
    {
        var p = Placement.For(3);
        Assert.Equal([2], p.NfCpus);
        Assert.DoesNotContain(p.TxCpu, p.NfCpus);
        Assert.DoesNotContain(p.RxCpu, p.NfCpus);
        Assert.DoesNotContain(2, p.BackendCpus);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(8)]
    [InlineData(16)]
    [InlineData(64)]
    [InlineData(128)]
    public void Cores_exist_roles_are_separated_as_far_as_the_machine_allows_and_none_is_idle(int cpus)
    {
        foreach (int nfs in new[] { 1, 2, 4, 8 })
        {
            var p = Placement.For(cpus, nfs);
            int[] all = [p.TxCpu, p.RxCpu, .. p.NfCpus, .. p.BackendCpus];
            Assert.All(all, c => Assert.InRange(c, 0, cpus - 1));
            Assert.NotEmpty(p.NfCpus);
            Assert.NotEmpty(p.BackendCpus);
            Assert.Equal(p.NfCpus.Count, p.NfCpus.Distinct().Count());
            for (int i = 0; i < nfs; i++) Assert.Contains(p.NfCpu(i), p.NfCpus);
            if (cpus >= 2)
            {
                // the sender must outpace the NFs: never on an NF core
                Assert.DoesNotContain(p.TxCpu, p.NfCpus);
                // split backends run on "other cores" than the NFs
                Assert.Empty(p.BackendCpus.Intersect(p.NfCpus));
                Assert.Equal(Enumerable.Range(0, cpus), all.Distinct().Order());
            }
            if (cpus >= 3) Assert.DoesNotContain(p.RxCpu, p.NfCpus);
            if (cpus >= 4)
            {
                Assert.Empty(p.BackendCpus.Intersect([p.TxCpu, p.RxCpu]));
                Assert.Equal(Math.Min(nfs, cpus - 3), p.NfCpus.Count);
            }
        }
    }
}
