/* clone3 with a stack of its own, for the addon (spawn.c) and isolated-init (init_main.c); a
 * vfork whose parent never runs again, for the zygote's copies (zygote.c). */
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
    ".size isolated_clone3, .-isolated_clone3\n"
    ".globl isolated_vfork_leave\n"
    ".hidden isolated_vfork_leave\n"
    ".type isolated_vfork_leave,@function\n"
    "isolated_vfork_leave:\n"
    "  mov $58, %eax\n"   /* __NR_vfork */
    "  syscall\n"
    "  test %rax, %rax\n"
    "  jle 1f\n"          /* the child (0) or no child (-errno) */
    "  xor %edi, %edi\n"  /* the parent, its child gone: out, touching no memory */
    "  mov $231, %eax\n"  /* __NR_exit_group */
    "  syscall\n"
    "  hlt\n"
    "1: ret\n"
    ".size isolated_vfork_leave, .-isolated_vfork_leave\n");
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
    ".size isolated_clone3, .-isolated_clone3\n"
    ".globl isolated_vfork_leave\n"
    ".hidden isolated_vfork_leave\n"
    ".type isolated_vfork_leave,%function\n"
    "isolated_vfork_leave:\n"
    "  mov x0, #0x4111\n" /* CLONE_VM | CLONE_VFORK | SIGCHLD */
    "  mov x1, xzr\n"
    "  mov x2, xzr\n"
    "  mov x3, xzr\n"
    "  mov x4, xzr\n"
    "  mov x8, #220\n"    /* __NR_clone; the return address stays in x30 */
    "  svc #0\n"
    "  cmp x0, #0\n"
    "  b.le 1f\n"         /* the child (0) or no child (-errno) */
    "  mov x0, xzr\n"     /* the parent, its child gone: out, touching no memory */
    "  mov x8, #94\n"     /* __NR_exit_group */
    "  svc #0\n"
    "  brk #0\n"
    "1: ret\n"
    ".size isolated_vfork_leave, .-isolated_vfork_leave\n");
#endif
/* clang-format on */
#endif
