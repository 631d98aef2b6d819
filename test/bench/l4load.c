/*
 * l4load — a small L4 load generator and server for the node agent benchmark (test/bench/l4.sh).
 * No dependencies beyond libc + pthreads. Output is one JSON object on stdout.
 *
 *   l4load server PORT
 *       serves every connection by its first byte: 'S' = sink (read and discard until EOF, then
 *       answer the byte count as 8 bytes), 'E' = echo fixed-size messages, 'C' = connect test
 *       (answer one byte, close).
 *   l4load throughput HOST PORT SECONDS
 *       one stream, writes 256 KiB chunks for SECONDS -> {"gbps": x, "bytes": n}
 *   l4load rr HOST PORT RATE SECONDS SIZE CONNS
 *       SIZE-byte request/response at a fixed total RATE over CONNS persistent connections;
 *       latency measured from the scheduled send time (no coordinated omission)
 *       -> {"rps": x, "p50_ms": .., "p90_ms": .., "p99_ms": .., "max_ms": .., "errors": n}
 *   l4load cps HOST PORT SECONDS CONC
 *       new connection per request ('C'), CONC threads -> {"cps": x, "errors": n}
 *   l4load idle HOST PORT N HOLD_SECONDS
 *       opens N echo connections, does one round-trip on each, holds them idle -> {"open": n}
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(const char *host, int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = recv(fd, c, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* ------------------------------------------------------------------ server */

static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char mode;
    enum { BUFSZ = 256 * 1024 };
    char *buf = malloc(BUFSZ);
    if (!buf || read_all(fd, &mode, 1) < 0)
        goto out;
    if (mode == 'S') {
        uint64_t total = 0;
        for (;;) {
            ssize_t r = recv(fd, buf, BUFSZ, 0);
            if (r <= 0)
                break;
            total += (uint64_t)r;
        }
        write_all(fd, &total, sizeof(total));
    } else if (mode == 'E') {
        uint32_t size;
        if (read_all(fd, &size, 4) < 0 || size > BUFSZ)
            goto out;
        for (;;) {
            if (read_all(fd, buf, size) < 0)
                break;
            if (write_all(fd, buf, size) < 0)
                break;
        }
    } else if (mode == 'C') {
        write_all(fd, "k", 1);
    }
out:
    free(buf);
    close(fd);
    return NULL;
}

static int cmd_server(int port)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (bind(ls, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(ls, 4096) < 0) {
        perror("l4load server");
        return 1;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 128 * 1024);
    for (;;) {
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        pthread_t t;
        if (pthread_create(&t, &attr, serve_conn, (void *)(intptr_t)fd) != 0)
            close(fd);
    }
}

/* ------------------------------------------------------------------ throughput */

static int cmd_throughput(const char *host, int port, double secs)
{
    int fd = dial(host, port);
    if (fd < 0 || write_all(fd, "S", 1) < 0) {
        printf("{\"error\": \"connect\"}\n");
        return 1;
    }
    static char buf[256 * 1024];
    memset(buf, 'x', sizeof(buf));
    double t0 = now_s(), t1;
    uint64_t sent = 0;
    while ((t1 = now_s()) - t0 < secs) {
        if (write_all(fd, buf, sizeof(buf)) < 0)
            break;
        sent += sizeof(buf);
    }
    shutdown(fd, SHUT_WR);
    uint64_t got = 0;
    int ok = read_all(fd, &got, sizeof(got)) == 0;
    double t2 = now_s();
    close(fd);
    printf("{\"gbps\": %.3f, \"bytes\": %llu, \"acked\": %llu, \"ok\": %s}\n",
           (double)got * 8 / (t2 - t0) / 1e9, (unsigned long long)sent, (unsigned long long)got,
           ok && got == sent ? "true" : "false");
    return ok ? 0 : 1;
}

/* ------------------------------------------------------------------ rr */

struct rr_thread {
    const char *host;
    int port;
    double rate, secs, start;
    uint32_t size;
    double *lat;
    size_t nlat, cap;
    unsigned errors;
};

static void *rr_run(void *arg)
{
    struct rr_thread *t = arg;
    int fd = dial(t->host, t->port);
    char *buf = calloc(1, t->size);
    if (fd < 0 || write_all(fd, "E", 1) < 0 || write_all(fd, &t->size, 4) < 0) {
        t->errors++;
        goto out;
    }
    double interval = 1.0 / t->rate;
    for (size_t i = 0;; i++) {
        double sched = t->start + (double)i * interval;
        if (sched - t->start >= t->secs)
            break;
        double n = now_s();
        if (sched > n) {
            double d = sched - n;
            struct timespec ts = {.tv_sec = (time_t)d, .tv_nsec = (long)((d - (time_t)d) * 1e9)};
            nanosleep(&ts, NULL);
        }
        if (write_all(fd, buf, t->size) < 0 || read_all(fd, buf, t->size) < 0) {
            t->errors++;
            break;
        }
        if (t->nlat < t->cap)
            t->lat[t->nlat++] = now_s() - sched;
    }
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmd_rr(const char *host, int port, double rate, double secs, uint32_t size,
                  unsigned conns)
{
    struct rr_thread *ts = calloc(conns, sizeof(*ts));
    pthread_t *th = calloc(conns, sizeof(*th));
    double start = now_s() + 0.2;
    size_t cap = (size_t)(rate / conns * secs) + 16;
    for (unsigned i = 0; i < conns; i++) {
        ts[i] = (struct rr_thread){.host = host, .port = port, .rate = rate / conns,
                                   .secs = secs, .size = size, .cap = cap,
                                   .start = start + (double)i / rate};
        ts[i].lat = calloc(cap, sizeof(double));
        pthread_create(&th[i], NULL, rr_run, &ts[i]);
    }
    size_t total = 0;
    unsigned errors = 0;
    for (unsigned i = 0; i < conns; i++) {
        pthread_join(th[i], NULL);
        total += ts[i].nlat;
        errors += ts[i].errors;
    }
    double *all = calloc(total + 1, sizeof(double));
    size_t k = 0;
    for (unsigned i = 0; i < conns; i++) {
        memcpy(all + k, ts[i].lat, ts[i].nlat * sizeof(double));
        k += ts[i].nlat;
        free(ts[i].lat);
    }
    qsort(all, total, sizeof(double), cmp_d);
#define PCT(p) (total ? all[(size_t)((double)(total - 1) * (p))] * 1e3 : 0)
    printf("{\"rps\": %.1f, \"requests\": %zu, \"p50_ms\": %.4f, \"p90_ms\": %.4f, "
           "\"p99_ms\": %.4f, \"max_ms\": %.4f, \"errors\": %u}\n",
           (double)total / secs, total, PCT(0.50), PCT(0.90), PCT(0.99), PCT(1.0), errors);
    free(all);
    free(ts);
    free(th);
    return errors ? 1 : 0;
}

/* ------------------------------------------------------------------ cps */

struct cps_thread {
    const char *host;
    int port;
    double end;
    unsigned long n, errors;
};

static void *cps_run(void *arg)
{
    struct cps_thread *t = arg;
    while (now_s() < t->end) {
        int fd = dial(t->host, t->port);
        char c;
        if (fd < 0 || write_all(fd, "C", 1) < 0 || read_all(fd, &c, 1) < 0)
            t->errors++;
        else
            t->n++;
        if (fd >= 0)
            close(fd);
    }
    return NULL;
}

static int cmd_cps(const char *host, int port, double secs, unsigned conc)
{
    struct cps_thread *ts = calloc(conc, sizeof(*ts));
    pthread_t *th = calloc(conc, sizeof(*th));
    double t0 = now_s();
    for (unsigned i = 0; i < conc; i++) {
        ts[i] = (struct cps_thread){.host = host, .port = port, .end = t0 + secs};
        pthread_create(&th[i], NULL, cps_run, &ts[i]);
    }
    unsigned long n = 0, e = 0;
    for (unsigned i = 0; i < conc; i++) {
        pthread_join(th[i], NULL);
        n += ts[i].n;
        e += ts[i].errors;
    }
    double dt = now_s() - t0;
    printf("{\"cps\": %.1f, \"connections\": %lu, \"errors\": %lu}\n", (double)n / dt, n, e);
    free(ts);
    free(th);
    return 0;
}

/* ------------------------------------------------------------------ idle */

static int cmd_idle(const char *host, int port, unsigned n, double hold)
{
    int *fds = calloc(n, sizeof(int));
    unsigned open_n = 0;
    uint32_t size = 1;
    for (unsigned i = 0; i < n; i++) {
        int fd = dial(host, port);
        char c = 'x';
        if (fd < 0 || write_all(fd, "E", 1) < 0 || write_all(fd, &size, 4) < 0 ||
            write_all(fd, &c, 1) < 0 || read_all(fd, &c, 1) < 0) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        fds[open_n++] = fd;
    }
    printf("{\"open\": %u}\n", open_n);
    fflush(stdout);
    struct timespec ts = {.tv_sec = (time_t)hold};
    nanosleep(&ts, NULL);
    for (unsigned i = 0; i < open_n; i++)
        close(fds[i]);
    free(fds);
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 3 && strcmp(argv[1], "server") == 0)
        return cmd_server(atoi(argv[2]));
    if (argc >= 5 && strcmp(argv[1], "throughput") == 0)
        return cmd_throughput(argv[2], atoi(argv[3]), atof(argv[4]));
    if (argc >= 8 && strcmp(argv[1], "rr") == 0)
        return cmd_rr(argv[2], atoi(argv[3]), atof(argv[4]), atof(argv[5]),
                      (uint32_t)atoi(argv[6]), (unsigned)atoi(argv[7]));
    if (argc >= 6 && strcmp(argv[1], "cps") == 0)
        return cmd_cps(argv[2], atoi(argv[3]), atof(argv[4]), (unsigned)atoi(argv[5]));
    if (argc >= 6 && strcmp(argv[1], "idle") == 0)
        return cmd_idle(argv[2], atoi(argv[3]), (unsigned)atoi(argv[4]), atof(argv[5]));
    fprintf(stderr, "usage: see the comment at the top of test/bench/l4load.c\n");
    return 2;
}
