/*
 * Tries what the native sandbox's seccomp filter must refuse and prints one line per try: "name return errno".
 * Built static at test time (native-runtime.test.ts), so that it needs nothing from the sandbox's /usr.
 * `seccomp-probe int80` tries only the i386 entry, which is safe to run outside the sandbox: the test asks the host
 * kernel first whether it has that entry at all.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static sigjmp_buf fault;

static void on_fault(int signal) {
  (void)signal;
  siglongjmp(fault, 1);
}

static void report(const char *name, long result) {
  printf("%s %ld %d\n", name, result, result == -1 ? errno : 0);
}

/* getpid through the i386 entry (int $0x80, i386 number 20): eax holds the pid or -errno. */
static void int80(void) {
#if defined(__x86_64__)
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_fault;
  sigaction(SIGSEGV, &action, NULL);
  if (sigsetjmp(fault, 1) != 0) {
    /* a kernel without the i386 entry raises a general protection fault */
    printf("int80 fault 0\n");
    return;
  }
  long result;
  __asm__ volatile("int $0x80" : "=a"(result) : "a"(20L) : "memory", "r8", "r9", "r10", "r11");
  printf("int80 %ld 0\n", result);
#else
  printf("int80 none 0\n");
#endif
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "int80") == 0) {
    int80();
    return 0;
  }
  errno = 0;
  report("ptrace", ptrace(PTRACE_TRACEME, 0, NULL, NULL));
  /* KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING, creating it */
  report("keyctl", syscall(SYS_keyctl, 0, -3, 1));
  report("unshare", unshare(CLONE_NEWUSER));
  report("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
  /* BPF_MAP_CREATE with no attributes */
  report("bpf", syscall(SYS_bpf, 0, NULL, 0));
  report("clone-newns", syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, NULL, NULL, NULL, 0));
  report("clone3", syscall(SYS_clone3, NULL, 0));
  report("personality", personality(ADDR_NO_RANDOMIZE));
  report("vsock", socket(40 /* AF_VSOCK */, SOCK_STREAM, 0));
#if defined(__x86_64__)
  /* getpid (39) through the x32 ABI */
  report("x32", syscall(0x40000000 | 39));
#endif
  int80();
  report("getpid", syscall(SYS_getpid));
  fflush(stdout);
  /* the filter holds in children too */
  pid_t child = fork();
  if (child == 0) {
    report("child-ptrace", ptrace(PTRACE_TRACEME, 0, NULL, NULL));
    fflush(stdout);
    _exit(0);
  }
  int status = 0;
  report("fork", child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) ? 0 : -1);
  return 0;
}
