/* tcprr: TCP request/response latency, for bench/net.py.

   tcprr server PORT
       Echo back whatever arrives, on every connection, forever (one epoll loop, so
       that a new connection costs an accept and no fork or thread).
   tcprr client HOST PORT COUNT [SIZE]
       One connection (TCP_NODELAY): COUNT timed round trips of a SIZE-byte message
       (default 1), after COUNT/10 (1 to 1000) warm-up round trips.
   tcprr client-conn HOST PORT COUNT [SIZE]
       The same, but each round trip on a new connection: socket, connect, send,
       receive, close. What a userland proxy costs most on.

   A client prints one line of JSON, times in microseconds:
       {"mode": "client", "count": 2000, "size": 1, "median_us": 31.2, "p99_us": 55.0,
        "min_us": 25.1, "mean_us": 33.0}
   HOST is an IPv4 address: no name lookup, so that the static binary needs no NSS.

   Build: gcc -O2 -static -o tcprr tcprr.c  */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZE 65536
#define IO_TIMEOUT_S 5

static char buf[MAX_SIZE];

static _Noreturn void die(const char *what) {
    fprintf(stderr, "tcprr: %s: %s\n", what, strerror(errno));
    exit(1);
}

static _Noreturn void usage(void) {
    fputs("usage: tcprr server PORT\n"
          "       tcprr client HOST PORT COUNT [SIZE]\n"
          "       tcprr client-conn HOST PORT COUNT [SIZE]\n",
          stderr);
    exit(2);
}

static long number(const char *text, long min, long max) {
    char *end;
    errno = 0;
    long n = strtol(text, &end, 10);
    if (errno || *end || end == text || n < min || n > max) {
        fprintf(stderr, "tcprr: not a number in [%ld, %ld]: %s\n", min, max, text);
        exit(2);
    }
    return n;
}

static void nodelay(int fd) {
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        die("setsockopt TCP_NODELAY");
}

/* ---------------------------------------------------------------- server */

/* Write all of it; the socket is non-blocking, so wait for room when it is full. */
static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, IO_TIMEOUT_S * 1000) <= 0)
                return -1;
        } else if (w < 0 && errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

static _Noreturn void serve(int port) {
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ls < 0)
        die("socket");
    int one = 1;
    if (setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die("setsockopt SO_REUSEADDR");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(ls, 1024) < 0)
        die("listen");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) < 0)
        die("epoll_ctl");
    for (;;) {
        struct epoll_event events[64];
        int n = epoll_wait(ep, events, 64, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    nodelay(c);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) < 0)
                        close(c);
                }
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0 || write_all(fd, buf, (size_t)r) < 0)
                close(fd); /* also leaves the epoll set */
        }
    }
}

/* ---------------------------------------------------------------- client */

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int dial(const struct sockaddr_in *addr) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    /* Bounds connect too: a path that drops packets fails in seconds, not minutes. */
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
        die("setsockopt SO_SNDTIMEO/SO_RCVTIMEO");
    nodelay(fd);
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0)
        die("connect");
    return fd;
}

static void round_trip(int fd, size_t size) {
    for (size_t sent = 0; sent < size;) {
        ssize_t w = write(fd, buf + sent, size - sent);
        if (w < 0 && errno != EINTR)
            die("send");
        if (w > 0)
            sent += (size_t)w;
    }
    for (size_t got = 0; got < size;) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r == 0) {
            errno = ECONNRESET;
            die("receive (connection closed)");
        }
        if (r < 0 && errno != EINTR)
            die("receive");
        if (r > 0)
            got += (size_t)r;
    }
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int client(const char *mode, const char *host, int port, long count, size_t size) {
    int per_connection = strcmp(mode, "client-conn") == 0;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "tcprr: not an IPv4 address: %s\n", host);
        return 2;
    }
    double *times = malloc((size_t)count * sizeof *times);
    if (times == NULL)
        die("malloc");
    memset(buf, 'x', size);
    long warm = count / 10 < 1 ? 1 : count / 10 > 1000 ? 1000 : count / 10;
    int fd = per_connection ? -1 : dial(&addr);
    for (long i = -warm; i < count; i++) {
        double start = now_us();
        if (per_connection)
            fd = dial(&addr);
        round_trip(fd, size);
        if (per_connection)
            close(fd);
        double elapsed = now_us() - start;
        if (i >= 0)
            times[i] = elapsed;
    }
    if (!per_connection)
        close(fd);
    double sum = 0;
    for (long i = 0; i < count; i++)
        sum += times[i];
    qsort(times, (size_t)count, sizeof *times, by_value);
    double median = count % 2 ? times[count / 2] : (times[count / 2 - 1] + times[count / 2]) / 2;
    long p99 = (99 * count + 99) / 100 - 1; /* nearest rank: ceil(0.99 n) - 1 */
    printf("{\"mode\": \"%s\", \"count\": %ld, \"size\": %zu, \"median_us\": %.2f, "
           "\"p99_us\": %.2f, \"min_us\": %.2f, \"mean_us\": %.2f}\n",
           mode, count, size, median, times[p99], times[0], sum / (double)count);
    free(times);
    return 0;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc == 3 && strcmp(argv[1], "server") == 0)
        serve((int)number(argv[2], 1, 65535));
    if ((argc == 5 || argc == 6) &&
        (strcmp(argv[1], "client") == 0 || strcmp(argv[1], "client-conn") == 0)) {
        size_t size = argc == 6 ? (size_t)number(argv[5], 1, MAX_SIZE) : 1;
        return client(argv[1], argv[2], (int)number(argv[3], 1, 65535),
                      number(argv[4], 1, 100000000), size);
    }
    usage();
}
