using System.Runtime.InteropServices;

namespace HyperNF.Linux;

/// <summary>execve(2): replaces this process with a program (hypernf exec). Returns only on failure, with errno.</summary>
public static partial class Exec
{
    [LibraryImport("libc", EntryPoint = "execve", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int ExecveNative(string path, IntPtr argv, IntPtr envp);

    /// <summary>Runs <paramref name="path"/> in place of this process; on failure returns the errno.</summary>
    public static int Execve(string path, IReadOnlyList<string> argv, IReadOnlyList<string> envp)
    {
        IntPtr a = ToNative(argv), e = ToNative(envp);
        ExecveNative(path, a, e);
        return Marshal.GetLastPInvokeError();
    }

    private static IntPtr ToNative(IReadOnlyList<string> strings)
    {
        IntPtr block = Marshal.AllocHGlobal((strings.Count + 1) * IntPtr.Size);
        for (int i = 0; i < strings.Count; i++) Marshal.WriteIntPtr(block, i * IntPtr.Size, Marshal.StringToCoTaskMemUTF8(strings[i]));
        Marshal.WriteIntPtr(block, strings.Count * IntPtr.Size, IntPtr.Zero);
        return block;
    }
}
