/* Reset entry of the bare-metal QEMU target: one hart, machine mode. Sets the stack, global and thread
 * pointers, enables the FPU, zeroes .tbss/.bss, installs the trap handler and calls port_main(). */
    .section .text.start, "ax"
    .globl _start
_start:
    csrr    t0, mhartid
    bnez    t0, park
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    la      sp, __stack_top
    la      t0, trap_entry
    csrw    mtvec, t0
    li      t0, (1 << 13)          /* mstatus.FS = initial: enable the FPU */
    csrs    mstatus, t0
    csrwi   fcsr, 0
    la      t0, __bss_start
    la      t1, __bss_end
zero_bss:
    bgeu    t0, t1, bss_done
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       zero_bss
bss_done:
    la      a0, __tls_base
    call    _set_tls
    call    port_main
    call    _exit
park:
    wfi
    j       park

    .align 4
trap_entry:
    csrr    a0, mcause
    csrr    a1, mepc
    csrr    a2, mtval
    la      sp, __stack_top
    call    port_trap
    j       park
