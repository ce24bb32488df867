using HyperNF.Functions;
using Xunit;

namespace HyperNF.Tests.Functions;

public class EncryptTests
{
    private const string Key = "key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    private static byte[][] Samples() =>
    [
        Pkt.Udp("10.0.0.1", 1000, "10.0.1.1", 2000, payload: 18),       // exactly 60 bytes
        Pkt.Udp("10.0.0.1", 1000, "10.0.1.1", 2000, payload: 4),        // padded to 60
        Pkt.Tcp("10.0.0.1", 1000, "10.0.1.1", 80, payload: 1400, vlan: 9, ipOptions: 8),
        Pkt.IcmpEcho("10.0.0.1", "10.0.1.1", 7, 7),
    ];

    [Fact]
    public void EncryptThenDecryptRestoresTheFrameBitForBit()
    {
        using var enc = (EncryptFunction)NetworkFunctions.Create("encrypt", Key);
        using var dec = (EncryptFunction)NetworkFunctions.Create("encrypt", Key);
        var orig = Samples();
        var (sealedFrames, v1) = Pkt.Run(enc, 0, orig);
        Assert.All(v1, v => Assert.Equal(Verdict.Forward, v));
        for (int i = 0; i < orig.Length; i++)
        {
            int l3 = Pkt.L3(orig[i]);
            int total = (orig[i][l3 + 2] << 8) | orig[i][l3 + 3];
            Assert.Equal(l3 + total + EncryptFunction.Overhead, sealedFrames[i].Length);
            Assert.Equal(total + EncryptFunction.Overhead, (sealedFrames[i][l3 + 2] << 8) | sealedFrames[i][l3 + 3]);
            int ihl = (orig[i][l3] & 0xf) * 4;
            // Header checksum valid; payload no longer readable.
            Assert.True(Ipv4.IsChecksumValid(sealedFrames[i].AsSpan(l3)));
            Assert.NotEqual(orig[i][(l3 + ihl)..(l3 + total)], sealedFrames[i][(l3 + ihl)..(l3 + total)]);
        }
        var (opened, v2) = Pkt.Run(dec, 1, sealedFrames);
        Assert.All(v2, v => Assert.Equal(Verdict.Forward, v));
        for (int i = 0; i < orig.Length; i++)
        {
            Assert.Equal(orig[i], opened[i]);
            Pkt.AssertChecksums(opened[i]);
        }
        Assert.Equal(orig.Length, Pkt.Counter(enc, "encrypted"));
        Assert.Equal(orig.Length, Pkt.Counter(dec, "decrypted"));
    }

    [Fact]
    public void NoncesDoNotRepeat()
    {
        using var enc = (EncryptFunction)NetworkFunctions.Create("encrypt", Key);
        var f = Pkt.Udp("10.0.0.1", 1, "10.0.1.1", 2);
        var (a, _) = Pkt.Run(enc, 0, f, f);
        Assert.NotEqual(a[0], a[1]); // same plaintext, different nonce, different ciphertext
    }

    [Theory]
    [InlineData(40)]  // ciphertext
    [InlineData(-20)] // nonce
    [InlineData(-1)]  // tag
    [InlineData(23)]  // IP protocol (associated data)
    public void TamperingIsDetected(int offset)
    {
        using var enc = (EncryptFunction)NetworkFunctions.Create("encrypt", Key);
        using var dec = (EncryptFunction)NetworkFunctions.Create("encrypt", Key);
        var (s, _) = Pkt.Run(enc, 0, Pkt.Udp("10.0.0.1", 1, "10.0.1.1", 2, payload: 64));
        var bad = s[0];
        bad[offset >= 0 ? offset : bad.Length + offset] ^= 0x01;
        var (_, v) = Pkt.Run(dec, 1, bad);
        Assert.Equal(Verdict.Drop, v[0]);
        Assert.Equal(1, Pkt.Counter(dec, "auth_failed"));
    }

    [Fact]
    public void WrongKeyFailsAndShortFramesFail()
    {
        using var enc = (EncryptFunction)NetworkFunctions.Create("encrypt", Key);
        using var other = (EncryptFunction)NetworkFunctions.Create("encrypt", "passphrase=hunter2");
        var (s, _) = Pkt.Run(enc, 0, Pkt.Udp("10.0.0.1", 1, "10.0.1.1", 2));
        var (_, v) = Pkt.Run(other, 1, s[0], Pkt.Udp("10.0.0.1", 1, "10.0.1.1", 2, payload: 4));
        Assert.Equal([Verdict.Drop, Verdict.Drop], v);
        Assert.Equal(2, Pkt.Counter(other, "auth_failed"));
    }

    [Fact]
    public void FramesThatWouldNotFitAreDropped()
    {
        using var enc = (EncryptFunction)NetworkFunctions.Create("encrypt", null);
        var big = Pkt.Udp("10.0.0.1", 1, "10.0.1.1", 2, payload: 2048 - 42 - 27); // 2021 bytes + 28 > 2048
        var fits = Pkt.Udp("10.0.0.1", 1, "10.0.1.1", 2, payload: 2048 - 42 - 28);
        var (f, v) = Pkt.Run(enc, 0, big, fits);
        Assert.Equal([Verdict.Drop, Verdict.Forward], v);
        Assert.Equal(2048, f[1].Length);
        Assert.Equal(1, Pkt.Counter(enc, "too_big"));
    }

    [Fact]
    public void NonIpv4Passes()
    {
        using var enc = (EncryptFunction)NetworkFunctions.Create("encrypt", null);
        var (f, v) = Pkt.Run(enc, 0, Pkt.Arp());
        Assert.Equal(Verdict.Forward, v[0]);
        Assert.Equal(Pkt.Arp(), f[0]);
    }

    [Theory]
    [InlineData("key=zz", "hex")]
    [InlineData("key=0011", "4 hex digits")]
    [InlineData("key=00112233445566778899aabbccddeeff,passphrase=x", "not both")]
    public void BadKeysAreExplained(string args, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => NetworkFunctions.Create("encrypt", args));
        Assert.Contains("encrypt", e.Message);
        Assert.Contains(expected, e.Message);
    }
}
