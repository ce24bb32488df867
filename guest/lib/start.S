/*
 * _start: the guest's entry (docs/guest-abi.md: RDI = GPA of the boot info, RSP = top of
 * RAM - 8, RFLAGS = 0x2, long mode and paging set up by the VMM).
 *
 * vCPU 0 keeps the stack the VMM gave it and calls hnf_start0 (lib/runtime.c), which
 * checks the boot info, zeroes .bss, runs main and exits with its return value.
 * Every other vCPU gets its own small stack in .hnf_stacks first (the VMM gives every
 * vCPU the same RSP, so sharing it would corrupt vCPU 0's frames) and idles in
 * hnf_start_secondary. Nothing else is set up: no IDT, no segment reloads, no FPU state.
 */
    .section .text.start, "ax"
    .globl _start
    .type _start, @function
_start:
    movl 156(%rdi), %eax            /* boot_info.vcpu */
    testl %eax, %eax
    jnz 1f
    andq $-16, %rsp                 /* RSP = top - 8 is a function's entry state; a call needs 16-byte alignment */
    call hnf_start0
    ud2                             /* hnf_start0 never returns */
1:
    cmpl $HNF_MAX_SECONDARY, %eax
    jae 2f
    movl %eax, %ecx
    shll $HNF_SECONDARY_STACK_SHIFT, %ecx
    leaq hnf_secondary_stacks(%rip), %rsp
    addq %rcx, %rsp                 /* the top of stack vcpu - 1 (16-byte aligned, as a call needs) */
    call hnf_start_secondary
2:
    ud2                             /* more vCPUs than stacks: crash visibly */
    .size _start, . - _start

    .section .hnf_stacks, "aw", @nobits
    .balign 16
    .globl hnf_secondary_stacks
hnf_secondary_stacks:
    .skip (HNF_MAX_SECONDARY - 1) << HNF_SECONDARY_STACK_SHIFT

    .section .note.GNU-stack, "", @progbits
