using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace HyperNF.Control;

/// <summary>
/// The control protocol between <c>hypernf</c> commands and <c>hypernf daemon</c>
/// (docs/control-protocol.md): one JSON object per line over a Unix stream socket.
/// Request <c>{"op":"create","args":{...},"id":7}</c>; answer <c>{"ok":true,"result":...}</c>
/// or <c>{"ok":false,"error":"...","code":"not_found"}</c>; streaming ops (top, pkt-gen)
/// send <c>{"event":"...","data":{...}}</c> lines before their answer.
/// </summary>
public static class ControlProtocol
{
    /// <summary>Bumped when a change would break an existing client.</summary>
    public const int Version = 1;
    /// <summary>Longest request line the daemon reads (without the newline); longer ones are refused and the connection closed.</summary>
    public const int MaxRequestBytes = 1 << 20;
    /// <summary>Longest answer line a client reads.</summary>
    public const int MaxResponseBytes = 64 << 20;
    public const string DefaultSocketPath = "/run/hypernf/hypernf.sock";
    public const string SocketEnvironmentVariable = "HYPERNF_SOCKET";

    /// <summary>The socket to use: <paramref name="option"/> if given, else $HYPERNF_SOCKET, else <see cref="DefaultSocketPath"/>.</summary>
    public static string ResolveSocketPath(string? option)
    {
        if (!string.IsNullOrWhiteSpace(option)) return option;
        string? env = Environment.GetEnvironmentVariable(SocketEnvironmentVariable);
        return string.IsNullOrWhiteSpace(env) ? DefaultSocketPath : env;
    }

    /// <summary>snake_case names, nulls left out, compact: how every message is written.</summary>
    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        WriteIndented = false,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        // Messages quote names ('ghost'); this is a socket protocol, not HTML, so keep them readable.
        // Control characters (and so newlines) are still escaped: a message stays on one line.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>The same, indented, for <c>--json</c> output.</summary>
    public static readonly JsonSerializerOptions JsonIndented = new(Json) { WriteIndented = true };

    private static readonly JsonWriterOptions WriterOptions = new()
    {
        Indented = false, SkipValidation = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>A request line (with its newline) for <paramref name="op"/>.</summary>
    public static byte[] Request(string op, object? args, long? id = null)
    {
        var buf = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buf, WriterOptions))
        {
            w.WriteStartObject();
            if (id is { } i) w.WriteNumber("id", i);
            w.WriteString("op", op);
            if (args is not null)
            {
                w.WritePropertyName("args");
                JsonSerializer.Serialize(w, args, args.GetType(), Json);
            }
            w.WriteEndObject();
        }
        return Terminate(buf);
    }

    /// <summary>A success answer line.</summary>
    public static byte[] Ok(JsonElement? id, object? result) => Message(id, w =>
    {
        w.WriteBoolean("ok", true);
        w.WritePropertyName("result");
        if (result is null) w.WriteNullValue();
        else JsonSerializer.Serialize(w, result, result.GetType(), Json);
    });

    /// <summary>A failure answer line; the message is kept to one line.</summary>
    public static byte[] Error(JsonElement? id, string code, string message) => Message(id, w =>
    {
        w.WriteBoolean("ok", false);
        w.WriteString("error", OneLine(message));
        w.WriteString("code", code);
    });

    /// <summary>An intermediate line of a streaming op.</summary>
    public static byte[] Event(JsonElement? id, string kind, object data) => Message(id, w =>
    {
        w.WriteString("event", kind);
        w.WritePropertyName("data");
        JsonSerializer.Serialize(w, data, data.GetType(), Json);
    });

    private static byte[] Message(JsonElement? id, Action<Utf8JsonWriter> body)
    {
        var buf = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buf, WriterOptions))
        {
            w.WriteStartObject();
            if (id is { } i)
            {
                w.WritePropertyName("id");
                i.WriteTo(w);
            }
            body(w);
            w.WriteEndObject();
        }
        return Terminate(buf);
    }

    private static byte[] Terminate(ArrayBufferWriter<byte> buf)
    {
        var line = new byte[buf.WrittenCount + 1];
        buf.WrittenSpan.CopyTo(line);
        line[^1] = (byte)'\n';
        return line;
    }

    /// <summary>Collapses line breaks so a message fits the one-line answer and the CLI's one-line error.</summary>
    public static string OneLine(string text)
    {
        if (text.IndexOfAny(['\n', '\r']) < 0) return text;
        return string.Join("; ", text.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }
}

/// <summary>Error codes in failure answers (the <c>code</c> field).</summary>
public static class ControlErrorCodes
{
    /// <summary>Not valid protocol: not JSON, not an object, a field of the wrong type, a line too long.</summary>
    public const string BadRequest = "bad_request";
    /// <summary>The op is not known.</summary>
    public const string UnknownOp = "unknown_op";
    /// <summary>A domain, bridge, port or setting that does not exist.</summary>
    public const string NotFound = "not_found";
    /// <summary>A value that is out of range or malformed (a config, a CPU list, a weight ...).</summary>
    public const string Invalid = "invalid";
    /// <summary>The request does not fit the current state (name taken, domain not running, bridge not empty).</summary>
    public const string Conflict = "conflict";
    /// <summary>Understood but cannot be honoured here (ctl ops 2-4, physical interfaces without an attacher).</summary>
    public const string Unsupported = "unsupported";
    /// <summary>Too many clients or queued changes; try again.</summary>
    public const string Busy = "busy";
    public const string ShuttingDown = "shutting_down";
    /// <summary>A bug in the daemon; the daemon keeps running.</summary>
    public const string Internal = "internal";
}

/// <summary>A request the daemon refuses, or a refusal as seen by a client; <see cref="Exception.Message"/> is one line.</summary>
public class ControlException : Exception
{
    public string Code { get; }

    public ControlException(string code, string message) : base(ControlProtocol.OneLine(message))
    {
        Code = code;
    }

    public static ControlException BadRequest(string message) => new(ControlErrorCodes.BadRequest, message);
    public static ControlException NotFound(string message) => new(ControlErrorCodes.NotFound, message);
    public static ControlException Invalid(string message) => new(ControlErrorCodes.Invalid, message);
    public static ControlException Conflict(string message) => new(ControlErrorCodes.Conflict, message);
    public static ControlException Unsupported(string message) => new(ControlErrorCodes.Unsupported, message);
}

/// <summary>The daemon cannot be reached (no socket, nobody listening, permission denied).</summary>
public sealed class ControlUnavailableException(string message) : Exception(message);

/// <summary>
/// One parsed request. Accessors check the type of each argument and say which one is
/// wrong (<c>args.weight: expected an integer, got a string</c>).
/// </summary>
public sealed class ControlRequest
{
    private readonly JsonElement _args;

    public string Op { get; }
    /// <summary>The request's <c>id</c>, echoed in every line answering it; null when absent.</summary>
    public JsonElement? Id { get; }

    private ControlRequest(string op, JsonElement args, JsonElement? id)
    {
        Op = op;
        _args = args;
        Id = id;
    }

    private static readonly JsonDocumentOptions DocumentOptions = new() { MaxDepth = 32, AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow };

    /// <summary>Parses one request line (UTF-8, without its newline).</summary>
    /// <exception cref="ControlException">The line is not a valid request (code bad_request).</exception>
    public static ControlRequest Parse(ReadOnlyMemory<byte> line)
    {
        var span = line.Span;
        if (span.StartsWith("\uFEFF"u8)) line = line[3..];
        if (line.Span.Trim(" \t\r"u8).IsEmpty) throw ControlException.BadRequest("empty request: send one JSON object per line, e.g. {\"op\":\"list\"}");
        if (!System.Text.Unicode.Utf8.IsValid(line.Span)) throw ControlException.BadRequest("not valid UTF-8: a request is one line of UTF-8 JSON");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(line, DocumentOptions);
        }
        catch (JsonException e)
        {
            throw ControlException.BadRequest($"not valid JSON ({Short(e.Message)}); send one JSON object per line, e.g. {{\"op\":\"list\"}}");
        }
        catch (ArgumentException e)
        {
            throw ControlException.BadRequest($"not valid UTF-8 JSON ({Short(e.Message)})");
        }
        // The document lives as long as the request; requests are short-lived, so clone and dispose.
        using (doc)
        {
            RefuseUndecodableStrings(line.Span);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw ControlException.BadRequest($"a request must be a JSON object like {{\"op\":\"list\"}}, not {Describe(root)}");
            JsonElement? id = null;
            string? op = null;
            JsonElement args = default;
            foreach (var p in root.EnumerateObject())
            {
                switch (p.Name)
                {
                    case "id":
                        if (p.Value.ValueKind is not (JsonValueKind.Number or JsonValueKind.String or JsonValueKind.Null))
                            throw ControlException.BadRequest($"id: expected a number or a string, got {Describe(p.Value)}");
                        id = p.Value.ValueKind == JsonValueKind.Null ? null : p.Value.Clone();
                        break;
                    case "op":
                        if (p.Value.ValueKind != JsonValueKind.String)
                            throw ControlException.BadRequest($"op: expected a string such as \"list\", got {Describe(p.Value)}");
                        op = Text(p.Value);
                        break;
                    case "args":
                        if (p.Value.ValueKind is not (JsonValueKind.Object or JsonValueKind.Null))
                            throw ControlException.BadRequest($"args: expected an object, got {Describe(p.Value)}");
                        args = p.Value.ValueKind == JsonValueKind.Null ? default : p.Value.Clone();
                        break;
                    default:
                        throw ControlException.BadRequest($"unknown field '{Short(p.Name)}' in the request; a request has op, args and id");
                }
            }
            if (string.IsNullOrEmpty(op)) throw ControlException.BadRequest("op is missing: every request names an op, e.g. {\"op\":\"list\"}");
            return new ControlRequest(op, args, id);
        }
    }

    public static ControlRequest Parse(string line) => Parse(Encoding.UTF8.GetBytes(line));

    /// <summary>
    /// Refuses a request with a string (a value or a field name, at any depth) whose escapes do
    /// not decode to text: a lone surrogate such as <c>\ud800</c> is valid JSON syntax but no
    /// string. Checked once here, so everything after parsing (the id written back in the
    /// answer, argument names in messages, config text) only ever sees strings that decode.
    /// </summary>
    private static void RefuseUndecodableStrings(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = DocumentOptions.MaxDepth });
        while (reader.Read())
        {
            if (reader.TokenType is not (JsonTokenType.String or JsonTokenType.PropertyName) || !reader.ValueIsEscaped) continue;
            try
            {
                reader.GetString();
            }
            catch (InvalidOperationException)
            {
                string what = reader.TokenType == JsonTokenType.PropertyName ? "field name" : "string";
                var raw = reader.ValueSpan; // as sent, escapes and all (valid UTF-8: checked before)
                string text = raw.Length <= 40 ? Encoding.UTF8.GetString(raw) : Encoding.UTF8.GetString(raw[..37]) + "...";
                throw ControlException.BadRequest(
                    $"the {what} \"{text}\" (byte {reader.TokenStartIndex}) has an escape that is not text " +
                    "(a lone surrogate such as \\ud800); JSON strings in a request must encode valid Unicode");
            }
        }
    }

    private bool TryGet(string name, out JsonElement value)
    {
        value = default;
        if (_args.ValueKind != JsonValueKind.Object) return false;
        if (!_args.TryGetProperty(name, out value)) return false;
        return value.ValueKind != JsonValueKind.Null;
    }

    /// <summary>Fails on any argument not in <paramref name="known"/>, so a typo is not silently ignored.</summary>
    public void AllowOnly(params string[] known)
    {
        if (_args.ValueKind != JsonValueKind.Object) return;
        foreach (var p in _args.EnumerateObject())
            if (Array.IndexOf(known, p.Name) < 0)
                throw ControlException.BadRequest(known.Length == 0
                    ? $"{Op} takes no arguments, got args.{Short(p.Name)}"
                    : $"{Op}: unknown argument args.{Short(p.Name)} (known: {string.Join(", ", known)})");
    }

    public string String(string name) =>
        OptionalString(name) ?? throw ControlException.BadRequest($"{Op}: args.{name} is missing");

    public string? OptionalString(string name)
    {
        if (!TryGet(name, out var v)) return null;
        if (v.ValueKind != JsonValueKind.String) throw ControlException.BadRequest($"{Op}: args.{name}: expected a string, got {Describe(v)}");
        return Text(v);
    }

    /// <summary>A string, or a number or boolean written as text (for set KEY VALUE).</summary>
    public string? OptionalScalarText(string name)
    {
        if (!TryGet(name, out var v)) return null;
        return v.ValueKind switch
        {
            JsonValueKind.String => Text(v),
            JsonValueKind.Number => v.GetRawText(),
            JsonValueKind.True => "1",
            JsonValueKind.False => "0",
            _ => throw ControlException.BadRequest($"{Op}: args.{name}: expected a string or a number, got {Describe(v)}"),
        };
    }

    public long Long(string name) =>
        OptionalLong(name) ?? throw ControlException.BadRequest($"{Op}: args.{name} is missing");

    public long? OptionalLong(string name)
    {
        if (!TryGet(name, out var v)) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long l))
            throw ControlException.BadRequest($"{Op}: args.{name}: expected an integer, got {Describe(v)}");
        return l;
    }

    public int? OptionalInt(string name)
    {
        long? l = OptionalLong(name);
        if (l is null) return null;
        if (l < int.MinValue || l > int.MaxValue) throw ControlException.Invalid($"{Op}: args.{name}: {l} is out of range");
        return (int)l;
    }

    public bool? OptionalBool(string name)
    {
        if (!TryGet(name, out var v)) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ControlException.BadRequest($"{Op}: args.{name}: expected true or false, got {Describe(v)}"),
        };
    }

    public int Int(string name) => OptionalInt(name) ?? throw ControlException.BadRequest($"{Op}: args.{name} is missing");

    public IReadOnlyList<string> StringList(string name)
    {
        if (!TryGet(name, out var v)) return [];
        if (v.ValueKind != JsonValueKind.Array) throw ControlException.BadRequest($"{Op}: args.{name}: expected an array of strings, got {Describe(v)}");
        var list = new List<string>();
        foreach (var e in v.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.String) throw ControlException.BadRequest($"{Op}: args.{name}[{list.Count}]: expected a string, got {Describe(e)}");
            list.Add(Text(e));
        }
        return list;
    }

    /// <summary>A string value (every string of a parsed request decodes: <see cref="RefuseUndecodableStrings"/>).</summary>
    private static string Text(JsonElement v) => v.GetString() ?? "";

    internal static string Describe(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => $"the number {Short(v.GetRawText())}",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => v.ValueKind.ToString(),
    };

    /// <summary>Quotes at most 60 characters of client-supplied text in a message.</summary>
    internal static string Short(string s) =>
        ControlProtocol.OneLine(s.Length <= 60 ? s : string.Create(CultureInfo.InvariantCulture, $"{s.AsSpan(0, 57)}..."));
}

/// <summary>
/// Reads newline-terminated lines from a stream with a cap on the line length, for both the
/// daemon (requests) and the client (answers). A line is only returned once its newline has
/// arrived: a peer that disconnects mid-line has sent nothing.
/// </summary>
/// <summary>
/// Bytes that unfinished long lines may hold across all of a daemon's connections: the first
/// 64 KiB of a line are free, anything beyond is taken from here, and given back when the line
/// is complete or the connection ends. Without it, thousands of connections each holding most of
/// a 1 MiB line would hold gigabytes.
/// </summary>
public sealed class LineBudget(long limit)
{
    private long _used;

    public long Limit { get; } = limit;
    public long Used => Volatile.Read(ref _used);

    internal bool TryTake(long bytes)
    {
        if (Interlocked.Add(ref _used, bytes) <= Limit) return true;
        Interlocked.Add(ref _used, -bytes);
        return false;
    }

    internal void Give(long bytes) => Interlocked.Add(ref _used, -bytes);
}

/// <summary>A line could not be buffered: the <see cref="LineBudget"/> shared by all connections is spent.</summary>
public sealed class LineBudgetException(long limit)
    : Exception($"the daemon already holds {limit >> 20} MiB of unfinished request lines")
{
    public long Limit { get; } = limit;
}

public sealed class LineReader(Stream stream, int maxLineBytes, LineBudget? budget = null)
{
    private readonly byte[] _buffer = new byte[16 * 1024];
    private int _start, _end;
    private ArrayBufferWriter<byte> _line = new(1024);

    /// <summary>A line buffer grown past this for a long line is dropped once the line is returned, so an idle connection keeps little memory.</summary>
    private const int KeptBufferBytes = 64 * 1024;

    /// <summary>The line buffer's current capacity (for tests: it shrinks back after a long line).</summary>
    internal int BufferCapacity => _line.Capacity;

    private readonly object _budgetGate = new();
    private long _reserved;
    private bool _released;

    /// <summary>Makes sure the budget covers a line of <paramref name="lineBytes"/>; false when it cannot.</summary>
    private bool Reserve(long lineBytes)
    {
        long over = lineBytes - KeptBufferBytes;
        if (budget is null || over <= 0) return true;
        lock (_budgetGate)
        {
            if (_released) return false;
            if (over <= _reserved) return true;
            if (!budget.TryTake(over - _reserved)) return false;
            _reserved = over;
            return true;
        }
    }

    /// <summary>Drops the current line's buffer and gives back what it took from the budget.</summary>
    private void DropLine()
    {
        if (_line.Capacity > KeptBufferBytes) _line = new ArrayBufferWriter<byte>(1024);
        else _line.ResetWrittenCount();
        if (budget is null) return;
        lock (_budgetGate)
        {
            budget.Give(_reserved);
            _reserved = 0;
        }
    }

    /// <summary>The connection is over: gives back what the reader took from the budget, and takes nothing more.</summary>
    public void ReleaseBudget()
    {
        if (budget is null) return;
        lock (_budgetGate)
        {
            _released = true;
            budget.Give(_reserved);
            _reserved = 0;
        }
    }
    private bool _discarding;

    /// <summary>True while part of a line has arrived and its newline has not (the line timeout applies then).</summary>
    public bool InLine => Volatile.Read(ref _partial);

    /// <summary><see cref="System.Diagnostics.Stopwatch"/> timestamp of the first byte of the current partial line.</summary>
    public long LineStartTicks => Volatile.Read(ref _lineStart);

    private bool _partial;
    private long _lineStart;

    /// <summary>The next line without its newline (a trailing CR removed), or null at end of stream.</summary>
    /// <exception cref="LineTooLongException">The line exceeds the cap; the rest of it is skipped by the next call.</exception>
    /// <exception cref="LineBudgetException">The shared budget cannot hold the rest of the line; it is skipped likewise.</exception>
    public async ValueTask<ReadOnlyMemory<byte>?> ReadLineAsync(CancellationToken ct)
    {
        _line.ResetWrittenCount();
        while (true)
        {
            if (_start < _end)
            {
                var avail = _buffer.AsSpan(_start, _end - _start);
                int nl = avail.IndexOf((byte)'\n');
                var chunk = nl >= 0 ? avail[..nl] : avail;
                if (_discarding)
                {
                    _start += nl >= 0 ? nl + 1 : chunk.Length;
                    if (nl >= 0) _discarding = false;
                    continue;
                }
                if (_line.WrittenCount + chunk.Length > maxLineBytes)
                {
                    _discarding = true;
                    Volatile.Write(ref _partial, false);
                    DropLine();
                    throw new LineTooLongException(maxLineBytes);
                }
                if (!Reserve(_line.WrittenCount + chunk.Length))
                {
                    _discarding = true;
                    Volatile.Write(ref _partial, false);
                    DropLine();
                    throw new LineBudgetException(budget!.Limit);
                }
                _line.Write(chunk);
                _start += chunk.Length;
                if (nl < 0 && chunk.Length > 0 && !_partial)
                {
                    Volatile.Write(ref _lineStart, System.Diagnostics.Stopwatch.GetTimestamp());
                    Volatile.Write(ref _partial, true);
                }
                if (nl >= 0)
                {
                    Volatile.Write(ref _partial, false);
                    _start++;
                    var result = _line.WrittenMemory;
                    if (!result.IsEmpty && result.Span[^1] == (byte)'\r') result = result[..^1];
                    byte[] copy = result.ToArray();
                    DropLine();
                    return copy;
                }
            }
            _start = _end = 0;
            int n = await stream.ReadAsync(_buffer, ct).ConfigureAwait(false);
            if (n == 0) return null;
            _end = n;
        }
    }
}

public sealed class LineTooLongException(int max)
    : Exception($"line longer than {max} bytes")
{
    public int Max { get; } = max;
}
