namespace HyperNF.Control;

/// <summary>
/// A problem in an xl domain config. The message reads like a compiler's,
/// <c>linux.cfg:4: vcpus: 'x' is not an integer (want 1..64)</c>, so an editor can jump to it.
/// </summary>
public sealed class XlConfigException : Exception
{
    /// <summary>File name as given to <see cref="XlConfig.Parse"/> or <see cref="XlConfig.Load"/>.</summary>
    public string FileName { get; }
    /// <summary>
    /// 1-based line, always: a setting the config lacks (a missing <c>name</c>, no <c>vif</c> for
    /// an NF that needs ports) is reported at line 1, the file as a whole, so every message has
    /// <c>file:line:</c> and an editor can jump to it.
    /// </summary>
    public int Line { get; }
    /// <summary>The setting concerned, when there is one.</summary>
    public string? Key { get; }
    /// <summary>The message without the file:line: key: prefix.</summary>
    public string Reason { get; }

    public XlConfigException(string fileName, int line, string? key, string reason)
        : base(Format(fileName, line, key, reason))
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(line, 1);
        FileName = fileName;
        Line = line;
        Key = key;
        Reason = reason;
    }

    internal static string Format(string fileName, int line, string? key, string text)
    {
        return key is null ? $"{fileName}:{line}: {text}" : $"{fileName}:{line}: {key}: {text}";
    }
}
