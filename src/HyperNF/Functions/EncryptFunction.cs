using System.Security.Cryptography;
using System.Text;

namespace HyperNF.Functions;

/// <summary>
/// "encrypt": AES-GCM over the IPv4 payload, one packet at a time, in place. Frames arriving on
/// port 0 are encrypted: everything after the IP header (L4 header and data) becomes ciphertext,
/// followed by a 12-byte nonce and a 16-byte tag, and the IP total length and header checksum are
/// updated. Frames arriving on port 1 are decrypted and verified, and the trailer removed, so two
/// instances with the same key, wired port 1 to port 1, form a tunnel that restores the original
/// IP packet bit for bit.
/// </summary>
/// <remarks>
/// <para>Arguments: <c>key=HEX</c> (32, 48 or 64 hex digits: AES-128, -192 or -256) or
/// <c>passphrase=TEXT</c> (AES-256 with key SHA-256(TEXT)); with neither, a fixed built-in key
/// (SHA-256 of "HyperNF encrypt default key") is used, which gives reproducible experiments and no
/// secrecy at all.</para>
/// <para>Nonce = 4 random bytes drawn per instance + a 64-bit packet counter. The counter alone
/// would repeat nonces across instances sharing a key (both ends of a tunnel both count from 0),
/// and a repeated nonce breaks GCM; the random prefix keeps instances apart. The IP
/// protocol number is authenticated as associated data; the rest of the IP header is not, so
/// routers between the two ends may still decrement the TTL. The IP protocol field is left as it
/// was, so NFs between the two ends must not parse L4 headers.</para>
/// <para>Dropped and counted: frames whose encrypted form would not fit the buffer or exceed the
/// IPv4 length limit (<c>too_big</c>); frames that fail verification or are too short to carry a
/// nonce and tag (<c>auth_failed</c>; the AesGcm API reports a failure by exception, so a flood of
/// forged packets is slow to reject, but genuine traffic never takes that path); malformed IPv4
/// (<c>malformed</c>). Non-IPv4 frames (ARP) pass unchanged (<c>non_ipv4</c>). Ethernet padding of
/// frames shorter than 60 bytes is not carried through the tunnel: decrypted frames are padded with
/// zeros to 60 bytes.</para>
/// </remarks>
public sealed class EncryptFunction : INetworkFunction, IDisposable
{
    public const int NonceLength = 12;
    public const int TagLength = 16;
    public const int Overhead = NonceLength + TagLength;
    private const string DefaultKeyLabel = "HyperNF encrypt default key";

    private readonly AesGcm _aes;
    private readonly uint _salt;
    private ulong _counter;
    private long _encrypted, _decrypted, _authFailed, _tooBig, _malformed, _nonIp;

    public EncryptFunction(ReadOnlySpan<byte> key)
    {
        if (key.Length is not (16 or 24 or 32)) throw new ArgumentException($"AES key is {key.Length} bytes; it must be 16, 24 or 32");
        _aes = new AesGcm(key, TagLength);
        _salt = BitConverter.ToUInt32(RandomNumberGenerator.GetBytes(4));
    }

    public string Name => "encrypt";

    public void Process(ref FrameBatch batch)
    {
        bool encrypt = batch.InputPort == 0;
        for (int i = 0; i < batch.Count; i++)
        {
            var buf = batch.Buffer(i);
            var frame = buf[..batch.Length(i)];
            if (!Ethernet.TryGetNetworkHeader(frame, out ushort etherType, out int l3)) { _malformed++; batch.SetVerdict(i, Verdict.Drop); continue; }
            if (etherType != Ethernet.TypeIpv4) { _nonIp++; batch.SetVerdict(i, Verdict.Forward); continue; }
            var ip = frame[l3..];
            if (ip.Length < Ipv4.MinHeaderLength || Ipv4.Version(ip) != 4) { _malformed++; batch.SetVerdict(i, Verdict.Drop); continue; }
            int ihl = Ipv4.HeaderLength(ip), total = Ipv4.TotalLength(ip);
            if (ihl < Ipv4.MinHeaderLength || total < ihl || total > ip.Length) { _malformed++; batch.SetVerdict(i, Verdict.Drop); continue; }

            int newLength = encrypt ? Encrypt(buf, l3, ihl, total) : Decrypt(buf, l3, ihl, total);
            if (newLength < 0) { batch.SetVerdict(i, Verdict.Drop); continue; }
            batch.SetLength(i, newLength);
            batch.SetVerdict(i, Verdict.Forward);
        }
    }

    private int Encrypt(Span<byte> buf, int l3, int ihl, int total)
    {
        int newTotal = total + Overhead;
        if (newTotal > ushort.MaxValue || l3 + newTotal > buf.Length) { _tooBig++; return -1; }
        var ip = buf[l3..];
        var payload = ip[ihl..total];
        var nonce = ip.Slice(total, NonceLength);
        var tag = ip.Slice(total + NonceLength, TagLength);
        BitConverter.TryWriteBytes(nonce, _salt);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(nonce[4..], _counter++);
        _aes.Encrypt(nonce, payload, payload, tag, ip.Slice(Ipv4.ProtocolOffset, 1));
        Ipv4.RewriteTotalLength(ip, (ushort)newTotal);
        _encrypted++;
        return l3 + newTotal;
    }

    private int Decrypt(Span<byte> buf, int l3, int ihl, int total)
    {
        if (total - ihl < Overhead) { _authFailed++; return -1; }
        var ip = buf[l3..];
        int newTotal = total - Overhead;
        var payload = ip[ihl..newTotal];
        try
        {
            _aes.Decrypt(ip.Slice(newTotal, NonceLength), payload, ip.Slice(newTotal + NonceLength, TagLength), payload, ip.Slice(Ipv4.ProtocolOffset, 1));
        }
        catch (AuthenticationTagMismatchException)
        {
            _authFailed++;
            return -1;
        }
        Ipv4.RewriteTotalLength(ip, (ushort)newTotal);
        int length = l3 + newTotal;
        if (length < Ethernet.MinFrameLength)
        {
            // The bytes there are the old trailer; padding must not leak it.
            buf[length..Ethernet.MinFrameLength].Clear();
            length = Ethernet.MinFrameLength;
        }
        _decrypted++;
        return length;
    }

    public IReadOnlyList<KeyValuePair<string, long>> Counters =>
    [
        new("encrypted", _encrypted), new("decrypted", _decrypted), new("auth_failed", _authFailed),
        new("too_big", _tooBig), new("malformed", _malformed), new("non_ipv4", _nonIp),
    ];

    public void Dispose() => _aes.Dispose();

    /// <summary>Builds an encrypt NF from its <c>key=value</c> arguments (see the class remarks).</summary>
    public static EncryptFunction FromArgs(string? args)
    {
        var a = NfArgs.Parse("encrypt", args, ["key", "passphrase"]);
        var hex = a.Get("key");
        var pass = a.Get("passphrase");
        if (hex is not null && pass is not null)
            throw new ArgumentException("nf 'encrypt': give key= or passphrase=, not both");
        byte[] key;
        if (hex is not null)
        {
            try { key = Convert.FromHexString(hex); }
            catch (FormatException) { throw a.Error("key", hex, "expected hex digits (0-9, a-f) only"); }
            if (key.Length is not (16 or 24 or 32))
                throw a.Error("key", hex, $"it is {hex.Length} hex digits; AES needs 32, 48 or 64");
        }
        else
        {
            key = SHA256.HashData(Encoding.UTF8.GetBytes(pass ?? DefaultKeyLabel));
        }
        return new EncryptFunction(key);
    }
}
