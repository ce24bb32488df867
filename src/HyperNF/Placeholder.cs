namespace HyperNF; internal static class Placeholder {}
