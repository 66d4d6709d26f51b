/* sysprobe: raw syscalls from inside a container, for the confinement tests.
 *
 *   sysprobe seccomp    one line per probe, "NAME RESULT": RESULT is "ok" when the call
 *                       returned without an error, else the errno's name (EPERM, ENOSYS...);
 *                       the calls are harmless whatever the answer (reads, empty requests,
 *                       bad file descriptors); then "done"
 *   sysprobe forks N    fork up to N children that wait for SIGKILL; print
 *                       "forked=K of N errno=NAME" (NAME "none" if all N were made) and
 *                       wait for SIGTERM, with the children still there
 *
 * Built static on the host (gcc -static -O2 -o sysprobe sysprobe.c) and copied into the
 * busybox root file system, which has no way to make these calls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/quota.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KCMP_FILE 0
#define NR_STATMOUNT 457 /* newer than these headers */

static void report(const char *name, long result) {
    if (result < 0)
        printf("%s %s\n", name, strerrorname_np(errno));
    else
        printf("%s ok\n", name);
}

static void seccomp_probes(void) {
    char ldt[16];
    /* personality: podman lets through only these queries and settings */
    report("personality_query", personality(0xffffffff));
    report("personality_linux", personality(PER_LINUX));
    report("personality_linux32", personality(PER_LINUX32));
    personality(PER_LINUX);
    report("personality_read_implies_exec", personality(READ_IMPLIES_EXEC));
    personality(PER_LINUX);
    report("personality_addr_no_randomize", personality(ADDR_NO_RANDOMIZE));
    personality(PER_LINUX);
    /* 64-bit with high bits set: the kernel reads an unsigned int, so this is PER_LINUX */
    report("personality_high_bits", syscall(SYS_personality, 0x100000000L));
    report("modify_ldt", syscall(SYS_modify_ldt, 0, ldt, sizeof ldt));
    report("move_pages", syscall(SYS_move_pages, 0, 0L, NULL, NULL, NULL, 0));
    report("migrate_pages", syscall(SYS_migrate_pages, 0, 0L, NULL, NULL));
    report("vmsplice", syscall(SYS_vmsplice, -1, NULL, 0L, 0));
    report("io_pgetevents", syscall(SYS_io_pgetevents, 0L, 0L, 0L, NULL, NULL, NULL));
    report("kcmp", syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, 0L, 0L));
    report("quotactl", syscall(SYS_quotactl, QCMD(Q_SYNC, USRQUOTA), NULL, 0, NULL));
    report("statmount", syscall(NR_STATMOUNT, NULL, NULL, 0L, 0L));
    report("socket_netlink_audit", socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT));
    report("socket_netlink_route", socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
    report("getpid", syscall(SYS_getpid));
    puts("done");
}

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void __attribute__((noreturn)) forks(long n) {
    long made = 0;
    int error = 0;
    signal(SIGTERM, stop); /* as PID 1 of its namespace, only a handled signal reaches it */
    for (; made < n; made++) {
        pid_t pid = fork();
        if (pid < 0) {
            error = errno;
            break;
        }
        if (pid == 0) {
            for (;;)
                pause();
        }
    }
    printf("forked=%ld of %ld errno=%s\n", made, n, error ? strerrorname_np(error) : "none");
    fflush(stdout);
    for (;;)
        pause();
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 2 && strcmp(argv[1], "seccomp") == 0) {
        seccomp_probes();
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "forks") == 0)
        forks(atol(argv[2]));
    fprintf(stderr, "usage: sysprobe seccomp | sysprobe forks N\n");
    return 2;
}
