namespace HyperNF.Control;

/// <summary>
/// The <c>io_model=</c> setting of a domain: where the switching work of its TxSync runs.
/// Spelled as the paper and the Hypervisor layer name the three models.
/// </summary>
public enum IoModel
{
    /// <summary>HyperNF: the flush runs on the domain's own vCPU thread.</summary>
    Hypercall,
    /// <summary>A backend thread on other cores does the flush (Xen netback style).</summary>
    Split,
    /// <summary>A backend thread pinned to the domain's own core does the flush.</summary>
    Merge,
}
