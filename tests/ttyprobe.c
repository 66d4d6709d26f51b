/* ttyprobe DIR: what a command run by `sdcontainer exec` can do to a terminal it was given.
 *
 * For each of fd 0, fd 1, fd 2 and /dev/tty (opened O_NOCTTY), one line on stdout:
 *
 *   fd0: terminal TIOCSTI=ok TIOCSWINSZ=ok TCSETS=ok
 *   fd1: not a terminal (Inappropriate ioctl for device)
 *   tty: open: No such device or address
 *
 * On a terminal it pushes "touch DIR/pwned-NAME\n" into the terminal's input with TIOCSTI
 * (what the shell that reads that terminal next runs as its own command), sets its window
 * size to 11x33 with TIOCSWINSZ and turns its echo off and on again with TCSETS. Then one
 * line "session=S pid=P": whether the process leads a session of its own.
 *
 * Built static on the host (gcc -static -O2 -o ttyprobe ttyprobe.c) and copied into the
 * busybox root file system of the tests.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

static const char *result(int rc) { return rc < 0 ? strerror(errno) : "ok"; }

static void probe(const char *dir, const char *name, int fd) {
    struct winsize size;
    struct termios mode;
    char line[512];
    int rc = 0;

    if (ioctl(fd, TIOCGWINSZ, &size) < 0) {
        printf("%s: not a terminal (%s)\n", name, strerror(errno));
        return;
    }
    snprintf(line, sizeof line, "touch %s/pwned-%s\n", dir, name);
    for (const char *c = line; *c && rc == 0; c++) rc = ioctl(fd, TIOCSTI, c);
    printf("%s: terminal TIOCSTI=%s", name, result(rc));
    size.ws_row = 11;
    size.ws_col = 33;
    printf(" TIOCSWINSZ=%s", result(ioctl(fd, TIOCSWINSZ, &size)));
    rc = tcgetattr(fd, &mode);
    if (rc == 0) {
        mode.c_lflag &= ~ECHO;
        rc = ioctl(fd, TCSETS, &mode);
        mode.c_lflag |= ECHO;
        if (rc == 0) rc = ioctl(fd, TCSETS, &mode);
    }
    printf(" TCSETS=%s\n", result(rc));
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    setvbuf(stdout, NULL, _IONBF, 0);
    probe(dir, "fd0", 0);
    probe(dir, "fd1", 1);
    probe(dir, "fd2", 2);
    int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
    if (tty < 0)
        printf("tty: open: %s\n", strerror(errno));
    else
        probe(dir, "tty", tty);
    printf("session=%d pid=%d\n", (int)getsid(0), (int)getpid());
    return 0;
}
