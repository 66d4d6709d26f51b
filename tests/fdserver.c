/* fdserver: a tiny socket-activated server for the tests and the socket benchmark.
 *
 * It serves the fds systemd passed (sd_listen_fds rules: LISTEN_PID must be our pid,
 * LISTEN_FDS of them from fd 3 on) and answers every request with a report of what it
 * was given, so a test sees the container from the inside:
 *
 *   pid=1 listen_pid=1 listen_fds=2 names=web:admin fd=3 fds=0,1,2,3,4 env=HOME,LISTEN_FDS,...
 *
 * fds is /proc/self/fd as it was at start (before this program opened anything), env the
 * names of its environment variables, sorted, fd the passed fd that carried the request.
 * A listening stream socket: accept, read a request, answer "HTTP/1.0 200 OK" and the
 * report, close. A connected stream socket (Accept=yes): the same once, then exit. A
 * datagram socket: answer each datagram with the report. With no fds (or
 * "fdserver --port N") it listens on 127.0.0.1:N itself, for the proxy mode.
 * SIGHUP prints "reloaded" to stdout; SIGTERM exits 0.
 *
 * Built static on the host (gcc -static -O2 -o fdserver fdserver.c) and copied into the
 * busybox root file system: busybox has no server that takes a listening fd.
 */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

extern char **environ;

static char report[8192];
static volatile sig_atomic_t hup;

static void on_hup(int sig) { (void)sig; hup = 1; }
static void on_term(int sig) { (void)sig; _exit(0); }

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void describe(int nfds) {
    char fds[1024] = "", env[4096] = "";
    DIR *d = opendir("/proc/self/fd");
    int self = d ? dirfd(d) : -1, list[256], n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) && n < 256)
        if (e->d_name[0] != '.' && atoi(e->d_name) != self) list[n++] = atoi(e->d_name);
    if (d) closedir(d);
    for (int i = 0; i < n; i++)  /* readdir order is not numeric order: sort */
        for (int j = i + 1; j < n; j++)
            if (list[j] < list[i]) { int t = list[i]; list[i] = list[j]; list[j] = t; }
    for (int i = 0; i < n; i++)
        snprintf(fds + strlen(fds), sizeof fds - strlen(fds), "%s%d", i ? "," : "", list[i]);
    char *names[256];
    int m = 0;
    for (char **p = environ; *p && m < 256; p++) names[m++] = *p;
    qsort(names, m, sizeof *names, cmp);
    for (int i = 0; i < m; i++) {
        size_t len = strcspn(names[i], "=");
        snprintf(env + strlen(env), sizeof env - strlen(env), "%s%.*s", i ? "," : "", (int)len, names[i]);
    }
    const char *lp = getenv("LISTEN_PID"), *lf = getenv("LISTEN_FDS"), *ln = getenv("LISTEN_FDNAMES");
    snprintf(report, sizeof report, "pid=%d listen_pid=%s listen_fds=%s names=%s nfds=%d fds=%s env=%s",
             (int)getpid(), lp ? lp : "-", lf ? lf : "-", ln ? ln : "-", nfds, fds, env);
}

static void answer(int conn, int fd) {
    char buf[4096], out[9000];
    ssize_t r = read(conn, buf, sizeof buf);  /* one read: the tests send a short request */
    (void)r;
    int len = snprintf(out, sizeof out,
                       "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n%s fd=%d\n",
                       report, fd);
    for (int off = 0; off < len;) {
        ssize_t w = write(conn, out + off, len - off);
        if (w <= 0) break;
        off += w;
    }
}

int main(int argc, char **argv) {
    int nfds = 0;
    const char *lp = getenv("LISTEN_PID"), *lf = getenv("LISTEN_FDS");
    if (lp && lf && atoi(lp) == (int)getpid()) nfds = atoi(lf);
    describe(nfds);
    setvbuf(stdout, NULL, _IONBF, 0);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {0};
    sa.sa_handler = on_hup;  /* no SA_RESTART: poll returns EINTR and we say so */
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGTERM, on_term);
    if (nfds == 0) {
        int port = argc > 2 && !strcmp(argv[1], "--port") ? atoi(argv[2]) : 8080;
        int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (s != 3 && (dup2(s, 3) != 3 || close(s))) return 1;
        if (bind(3, (struct sockaddr *)&a, sizeof a) || listen(3, 128)) {
            perror("fdserver: listen");
            return 1;
        }
        nfds = 1;
    }
    printf("fdserver: %s\n", report);
    struct pollfd p[64];
    if (nfds > 64) nfds = 64;
    for (int i = 0; i < nfds; i++) p[i] = (struct pollfd){.fd = 3 + i, .events = POLLIN};
    for (;;) {
        if (poll(p, nfds, -1) < 0) {
            if (errno == EINTR && hup) { hup = 0; printf("reloaded\n"); continue; }
            if (errno == EINTR) continue;
            return 1;
        }
        for (int i = 0; i < nfds; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP))) continue;
            int fd = p[i].fd, type = 0, listening = 0;
            socklen_t len = sizeof type;
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
            len = sizeof listening;
            getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
            if (type == SOCK_DGRAM) {
                char buf[2048], out[9000];
                struct sockaddr_storage from;
                socklen_t fl = sizeof from;
                if (recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl) < 0) continue;
                int n = snprintf(out, sizeof out, "%s fd=%d\n", report, fd);
                sendto(fd, out, n, 0, (struct sockaddr *)&from, fl);
            } else if (listening) {
                int conn = accept(fd, NULL, NULL);
                if (conn < 0) continue;
                answer(conn, fd);
                close(conn);
            } else {  /* Accept=yes: systemd passed the connection itself */
                answer(fd, fd);
                return 0;
            }
        }
    }
}
