using System.Text;

namespace HyperNF.Control;

/// <summary>A single value: a quoted string or a bare number, with the line it is on.</summary>
internal readonly record struct XlAtom(string Text, bool Quoted, int Line);

/// <summary>One <c>key = value</c> of a config; exactly one of <see cref="Scalar"/> and <see cref="List"/> is set.</summary>
internal sealed record XlSetting(string Key, int Line, XlAtom? Scalar, IReadOnlyList<XlAtom>? List);

/// <summary>
/// The syntax of xl config files (libxlu's grammar): <c>key = value</c> statements ended by a
/// newline or ';', values that are "double" or 'single' quoted strings, numbers, or lists
/// <c>[ v, v, ]</c> that may span lines; '#' starts a comment. Meaning is not checked here,
/// only form, so every message can say exactly which character was unexpected.
/// </summary>
internal sealed class XlConfigReader
{
    private readonly string _text;
    private readonly string _file;
    private int _pos;
    private int _line = 1;

    private XlConfigReader(string text, string file)
    {
        _text = text;
        _file = file;
        if (text.Length > 0 && text[0] == '\uFEFF') _pos = 1; // a BOM left by an editor, when the caller read the text itself
    }

    public static List<XlSetting> Read(string text, string fileName)
    {
        ArgumentNullException.ThrowIfNull(text);
        return new XlConfigReader(text, fileName).ReadAll();
    }

    private XlConfigException Error(int line, string? key, string reason) => new(_file, line, key, reason);

    private char Peek => _pos < _text.Length ? _text[_pos] : '\0';
    private bool AtEnd => _pos >= _text.Length;

    /// <summary>Refuses a line longer than <see cref="XlConfig.MaxLineChars"/> before anything is parsed, so no message or value is built from one.</summary>
    private void CheckLineLengths()
    {
        int line = 1, start = 0;
        while (start <= _text.Length)
        {
            int nl = _text.IndexOf('\n', start);
            int end = nl < 0 ? _text.Length : nl;
            if (end - start > XlConfig.MaxLineChars)
                throw Error(line, null, $"the line is {end - start} characters long; a config line is at most {XlConfig.MaxLineChars}");
            if (nl < 0) return;
            start = nl + 1;
            line++;
        }
    }

    /// <summary>At most 60 characters of config text, for a message.</summary>
    internal static string Quote(string text) => text.Length <= 60 ? text : string.Concat(text.AsSpan(0, 57), "...");

    private List<XlSetting> ReadAll()
    {
        CheckLineLengths();
        var settings = new List<XlSetting>();
        while (true)
        {
            SkipBlanks();
            if (AtEnd) return settings;
            char c = Peek;
            if (c == '\n') { _pos++; _line++; continue; }
            if (c == ';') { _pos++; continue; }
            settings.Add(ReadSetting());
        }
    }

    /// <summary>Skips spaces, tabs, CRs and a comment, but not the newline that ends it.</summary>
    private void SkipBlanks()
    {
        while (!AtEnd)
        {
            char c = Peek;
            if (c is ' ' or '\t' or '\r' or '\f' or '\v') _pos++;
            else if (c == '#') { while (!AtEnd && Peek != '\n') _pos++; }
            else return;
        }
    }

    /// <summary>Inside a list newlines are just white space.</summary>
    private void SkipBlanksAndNewlines()
    {
        while (true)
        {
            SkipBlanks();
            if (Peek == '\n' && !AtEnd) { _pos++; _line++; }
            else return;
        }
    }

    private static bool IsKeyStart(char c) => char.IsAsciiLetter(c) || c == '_';
    private static bool IsKeyChar(char c) => char.IsAsciiLetterOrDigit(c) || c == '_';

    /// <summary>Characters that end a bare (unquoted) token.</summary>
    private static bool EndsBare(char c) => c is ' ' or '\t' or '\r' or '\n' or ',' or ']' or '[' or '#' or ';' or '=' or '"' or '\'' or '\0';

    private XlSetting ReadSetting()
    {
        int line = _line;
        if (!IsKeyStart(Peek))
        {
            string bad = BareToken();
            throw Error(line, null, $"expected a setting like key = value, found '{Quote(bad)}'");
        }
        int start = _pos;
        while (!AtEnd && IsKeyChar(Peek)) _pos++;
        if (_pos - start > XlConfig.MaxKeyChars)
            throw Error(line, null, $"setting name '{Quote(_text[start.._pos])}' is {_pos - start} characters long; setting names are at most {XlConfig.MaxKeyChars}");
        string key = _text[start.._pos];
        if (!AtEnd && !EndsBare(Peek) && Peek != '+')
        {
            // "vcpus-x = 1": report the whole token rather than complaining about the '-'.
            _pos = start;
            string bad = BareToken();
            throw Error(line, null, $"'{Quote(bad)}' is not a setting name: use letters, digits and '_'");
        }
        SkipBlanks();
        if (Peek == '+' && _pos + 1 < _text.Length && _text[_pos + 1] == '=')
            throw Error(line, key, $"'+=' is not supported; give the whole value in one '{key} = ...'");
        if (Peek != '=')
        {
            string found = AtEnd || Peek == '\n' ? "the end of the line" : $"'{Quote(BareToken())}'";
            throw Error(line, key, $"missing '=' after the setting name, found {found} (write {key} = VALUE)");
        }
        _pos++;
        SkipBlanks();
        if (AtEnd || Peek is '\n' or ';')
            throw Error(line, key, $"missing value after '=' (write {key} = \"...\", a number, or a [ list ])");

        XlSetting setting;
        if (Peek == '[') setting = new XlSetting(key, line, null, ReadList(key));
        else setting = new XlSetting(key, line, ReadAtom(key), null);

        SkipBlanks();
        if (!AtEnd && Peek is not ('\n' or ';'))
            throw Error(_line, key, $"unexpected '{Quote(BareToken())}' after the value; put one setting per line (or separate them with ';')");
        return setting;
    }

    private List<XlAtom> ReadList(string key)
    {
        int openLine = _line;
        _pos++; // '['
        var items = new List<XlAtom>();
        while (true)
        {
            SkipBlanksAndNewlines();
            if (AtEnd) throw Error(openLine, key, "unterminated list: no ']' before the end of the file");
            if (Peek == ']') { _pos++; return items; }
            if (Peek == '[') throw Error(_line, key, "lists cannot be nested; write [ \"a\", \"b\" ]");
            if (Peek == ',') throw Error(_line, key, "empty list element (two commas, or a comma right after '[')");
            items.Add(ReadAtom(key));
            SkipBlanksAndNewlines();
            if (AtEnd) throw Error(openLine, key, "unterminated list: no ']' before the end of the file");
            if (Peek == ',') { _pos++; continue; }
            if (Peek == ']') { _pos++; return items; }
            throw Error(_line, key, $"expected ',' or ']' in the list, found '{Quote(BareToken())}'");
        }
    }

    private XlAtom ReadAtom(string key)
    {
        char c = Peek;
        if (c is '"' or '\'') return ReadString(key, c);
        int line = _line;
        string token = BareToken();
        if (IsNumber(token)) return new XlAtom(token, false, line);
        if (token.Length == 0) token = c.ToString();
        throw Error(line, key, $"value '{Quote(token)}' must be quoted: write {key} = \"{Quote(token)}\"");
    }

    private static bool IsNumber(string s)
    {
        var t = s.AsSpan();
        if (t.Length > 0 && t[0] == '-') t = t[1..];
        if (t.Length == 0) return false;
        if (t.Length > 2 && t[0] == '0' && (t[1] is 'x' or 'X'))
        {
            foreach (char ch in t[2..]) if (!char.IsAsciiHexDigit(ch)) return false;
            return true;
        }
        foreach (char ch in t) if (!char.IsAsciiDigit(ch)) return false;
        return true;
    }

    private string BareToken()
    {
        int start = _pos;
        while (!AtEnd && !EndsBare(Peek)) _pos++;
        if (_pos == start && !AtEnd && Peek != '\n') _pos++; // a lone punctuation character
        return _text[start.._pos];
    }

    /// <summary>
    /// A quoted string on one line. Double quotes take C escapes (libxlu does too); single
    /// quotes are literal, which is what makes them handy for kernel command lines.
    /// </summary>
    private XlAtom ReadString(string key, char quote)
    {
        int line = _line;
        _pos++;
        var sb = new StringBuilder();
        while (true)
        {
            if (AtEnd || Peek == '\n')
                throw Error(line, key, $"unterminated string: no closing {quote} on this line");
            char c = _text[_pos++];
            if (c == quote) return new XlAtom(sb.ToString(), true, line);
            if (c == '\\' && quote == '"')
            {
                if (AtEnd || Peek == '\n') throw Error(line, key, "unterminated string: it ends with a lone '\\'");
                char e = _text[_pos++];
                sb.Append(e switch
                {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '\\' => '\\',
                    '"' => '"',
                    '\'' => '\'',
                    _ => throw Error(line, key, $"unknown escape '\\{e}' in a string; write '\\\\' for a backslash or use single quotes"),
                });
                continue;
            }
            sb.Append(c);
        }
    }
}
