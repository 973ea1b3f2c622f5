/* clone3 with a stack of its own, for the addon (spawn.c) and isolated-init (init_main.c). */
#include <linux/sched.h>
#include <stddef.h>

#include "clone3.h"
#include "sandbox.h"

/* clone3 with a stack of its own: the child calls fn(arg) there and never
 * returns into the caller's frames (with CLONE_VM they are the parent's
 * frames). The wrapper is a few instructions of assembly because glibc 2.36
 * exports no clone3 and its clone() cannot pass CLONE_INTO_CGROUP.
 * Returns the child's pid or -errno. */
#if defined(__x86_64__) || defined(__aarch64__)
/* An assembly listing, one instruction a line: */
/* clang-format off */
#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".globl isolated_clone3\n"
    ".hidden isolated_clone3\n"
    ".type isolated_clone3,@function\n"
    "isolated_clone3:\n"
    "  mov %rdx, %r8\n"   /* fn and arg survive the syscall in r8/r9 */
    "  mov %rcx, %r9\n"
    "  mov $435, %eax\n"  /* __NR_clone3 */
    "  syscall\n"
    "  test %rax, %rax\n"
    "  jnz 1f\n"
    "  xor %ebp, %ebp\n"  /* child: new stack, no caller frames */
    "  mov %r9, %rdi\n"
    "  call *%r8\n"
    "  mov %eax, %edi\n"
    "  mov $231, %eax\n"  /* __NR_exit_group: fn returned */
    "  syscall\n"
    "  hlt\n"
    "1: ret\n"
    ".size isolated_clone3, .-isolated_clone3\n");
#else
__asm__(
    ".text\n"
    ".globl isolated_clone3\n"
    ".hidden isolated_clone3\n"
    ".type isolated_clone3,%function\n"
    "isolated_clone3:\n"
    "  mov x8, #435\n"    /* __NR_clone3; x2 (fn) and x3 (arg) survive svc */
    "  svc #0\n"
    "  cbnz x0, 1f\n"
    "  mov x29, xzr\n"
    "  mov x30, xzr\n"
    "  mov x0, x3\n"
    "  blr x2\n"
    "  mov x8, #94\n"     /* __NR_exit_group */
    "  svc #0\n"
    "  brk #0\n"
    "1: ret\n"
    ".size isolated_clone3, .-isolated_clone3\n");
#endif
/* clang-format on */
#endif
