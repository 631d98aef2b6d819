/*
 * opagents — N simulated node agents for the operator benchmark (test/bench/operator.sh).
 *
 *   opagents --url https://127.0.0.1:PORT [--sni NAME] [--root PEM] --ready HOST:PORT
 *            --tokens DIR NODE...
 *
 * Waits until GET http://<ready>/healthz/ready answers 200 (polled every 10 ms), then opens one
 * config stream per NODE (GET /v1/config?node=NODE, HTTP/1.1, TLS verified against --root for
 * the name --sni, `Authorization: Bearer` <DIR>/<NODE>.token) and follows all of them from one
 * epoll loop. It parses only what it needs: HTTP status, chunked framing, NDJSON line
 * boundaries, the `synced` events and their versions. A stream that ends is reopened after
 * 500 ms with since=<last synced version>, as the real agent does.
 *
 * Timestamps are CLOCK_MONOTONIC nanoseconds (the driver, opbench.py, uses the same clock).
 * stdout, one line each:
 *   ready <t>                         the readiness endpoint answered 200
 *   allsynced <t_first> <t_last> <bytes> <events>
 *                                     every stream received its full snapshot and `synced`
 *                                     (bytes/events: the first agent's snapshot)
 *   seen <id> <t_first> <t_last> <extra>
 *                                     every expected stream received an event line containing
 *                                     all the substrings of marker <id> (extra: streams outside
 *                                     the expected set that received it until then)
 *   stats <reconnects> <bytes> <events>
 * stdin commands: `mark <id> <agents> <sub>[<TAB><sub>...]` (agents: `*` or comma-separated
 * indexes into the NODE list, the streams expected to receive it: the operator scopes policies
 * per node), `unmark <id>`, `stats`, `quit`.
 * Diagnostics (drops, HTTP errors) go to stderr.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_MARKS    64
#define MAX_SUBS     4
#define MAX_LINE     (64u << 20)
#define RECONNECT_NS (500ull * 1000 * 1000)

enum st { ST_IDLE, ST_CONNECT, ST_HANDSHAKE, ST_SEND, ST_HEADERS, ST_BODY };
enum ch { CH_SIZE, CH_DATA, CH_CRLF, CH_RAW };

struct mark {
    bool used;
    long id;
    int nsubs;
    char *subs[MAX_SUBS];
    unsigned char *want; /* per agent: 1 = expected to receive it */
    unsigned char *seen; /* per agent */
    int need, count, extra;
    uint64_t t_first, t_last;
};

struct agent {
    int idx;
    const char *node;
    int fd;
    SSL *ssl;
    enum st st;
    char req[4096];
    size_t req_len, req_off;
    char hdr[8192];
    size_t hdr_len;
    enum ch ch;
    uint64_t ch_left;
    char ch_size[32];
    size_t ch_size_len;
    char *line;
    size_t line_len, line_cap;
    bool synced;
    uint64_t t_synced, version, bytes, events, snap_bytes, snap_events;
    uint64_t reconnect_at;
    unsigned reconnects;
};

static struct agent *agents;
static int n_agents, n_synced, epfd;
static bool all_reported;
static uint64_t t_first_sync, t_last_sync;
static struct mark marks[MAX_MARKS];
static SSL_CTX *ctx;
static const char *sni, *tokdir;
static struct sockaddr_in op_addr, ready_addr;
static uint64_t now_cache;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int parse_addr(const char *s, struct sockaddr_in *sin)
{
    char host[64];
    const char *colon = strrchr(s, ':');

    if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &sin->sin_addr) == 1 ? 0 : -1;
}

/* ------------------------------------------------------------------ markers */

static void check_marks(struct agent *a, const char *p, size_t len)
{
    for (int i = 0; i < MAX_MARKS; i++) {
        struct mark *m = &marks[i];
        bool all = true;

        if (!m->used || m->seen[a->idx])
            continue;
        for (int k = 0; k < m->nsubs && all; k++)
            all = memmem(p, len, m->subs[k], strlen(m->subs[k])) != NULL;
        if (!all)
            continue;
        m->seen[a->idx] = 1;
        if (!m->want[a->idx]) {
            m->extra++; /* outside the expected scope */
            continue;
        }
        if (m->count == 0 || now_cache < m->t_first)
            m->t_first = now_cache;
        if (now_cache > m->t_last)
            m->t_last = now_cache;
        if (++m->count == m->need) {
            printf("seen %ld %llu %llu %d\n", m->id, (unsigned long long)m->t_first,
                   (unsigned long long)m->t_last, m->extra);
            fflush(stdout);
            for (int k = 0; k < m->nsubs; k++)
                free(m->subs[k]);
            free(m->seen);
            free(m->want);
            memset(m, 0, sizeof(*m));
        }
    }
}

/* "<id> <agents> <sub>[<TAB><sub>...]", agents = "*" or comma-separated agent indexes */
static void mark_cmd(char *line)
{
    char *sp, *set, *subs, *tok, *save = NULL;
    long id = strtol(line, &sp, 10);
    struct mark *m = NULL;

    for (int i = 0; i < MAX_MARKS && m == NULL; i++)
        if (!marks[i].used)
            m = &marks[i];
    if (m == NULL || *sp != ' ' || (subs = strchr(sp + 1, ' ')) == NULL) {
        fprintf(stderr, "opagents: bad or too many marks\n");
        return;
    }
    set = sp + 1;
    *subs++ = '\0';
    m->used = true;
    m->id = id;
    m->seen = calloc((size_t)n_agents, 1);
    m->want = calloc((size_t)n_agents, 1);
    if (m->seen == NULL || m->want == NULL)
        abort();
    if (strcmp(set, "*") == 0) {
        memset(m->want, 1, (size_t)n_agents);
        m->need = n_agents;
    } else {
        for (tok = strtok_r(set, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            long k = strtol(tok, NULL, 10);

            if (k >= 0 && k < n_agents && !m->want[k]) {
                m->want[k] = 1;
                m->need++;
            }
        }
    }
    save = NULL;
    for (tok = strtok_r(subs, "\t", &save); tok && m->nsubs < MAX_SUBS;
         tok = strtok_r(NULL, "\t", &save))
        m->subs[m->nsubs++] = strdup(tok);
}

static void unmark_cmd(long id)
{
    for (int i = 0; i < MAX_MARKS; i++) {
        struct mark *m = &marks[i];

        if (!m->used || m->id != id)
            continue;
        fprintf(stderr, "opagents: mark %ld seen by %d of %d expected agents (+%d others)\n", id,
                m->count, m->need, m->extra);
        for (int k = 0; k < m->nsubs; k++)
            free(m->subs[k]);
        free(m->seen);
        free(m->want);
        memset(m, 0, sizeof(*m));
    }
}

/* ------------------------------------------------------------------ stream parsing */

static uint64_t json_u64_after(const char *p, size_t len, const char *key)
{
    const char *k = memmem(p, len, key, strlen(key));

    return k ? strtoull(k + strlen(key), NULL, 10) : 0;
}

static void on_line(struct agent *a, const char *p, size_t len)
{
    /* the type is the first member in practice; look a little further to stay tolerant */
    size_t head = len < 64 ? len : 64;

    if (memmem(p, head, "\"type\":\"ping\"", 13))
        return;
    if (memmem(p, head, "\"type\":\"synced\"", 15)) {
        char tmp[128];
        size_t n = len < sizeof(tmp) - 1 ? len : sizeof(tmp) - 1;

        memcpy(tmp, p, n);
        tmp[n] = '\0';
        a->version = json_u64_after(tmp, n, "\"version\":");
        if (!a->synced) {
            a->synced = true;
            a->t_synced = now_cache;
            a->snap_bytes = a->bytes;
            a->snap_events = a->events;
            if (n_synced == 0 || now_cache < t_first_sync)
                t_first_sync = now_cache;
            if (now_cache > t_last_sync)
                t_last_sync = now_cache;
            if (++n_synced == n_agents && !all_reported) {
                all_reported = true;
                printf("allsynced %llu %llu %llu %llu\n", (unsigned long long)t_first_sync,
                       (unsigned long long)t_last_sync, (unsigned long long)agents[0].snap_bytes,
                       (unsigned long long)agents[0].snap_events);
                fflush(stdout);
            }
        }
        return;
    }
    a->events++;
    check_marks(a, p, len);
}

static int body_data(struct agent *a, const char *p, size_t n)
{
    a->bytes += n;
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;

        if (nl && a->line_len == 0) {
            on_line(a, p, take);
        } else {
            if (a->line_len + take > MAX_LINE) {
                fprintf(stderr, "opagents: %s: line over %u bytes\n", a->node, MAX_LINE);
                return -1;
            }
            if (a->line_len + take > a->line_cap) {
                size_t cap = a->line_cap ? a->line_cap : 65536;

                while (cap < a->line_len + take)
                    cap *= 2;
                a->line = realloc(a->line, cap);
                if (a->line == NULL)
                    abort();
                a->line_cap = cap;
            }
            memcpy(a->line + a->line_len, p, take);
            a->line_len += take;
            if (nl) {
                on_line(a, a->line, a->line_len);
                a->line_len = 0;
            }
        }
        if (!nl)
            break;
        p = nl + 1;
        n -= take + 1;
    }
    return 0;
}

/* returns -1 on a framing error or the end of the stream */
static int body(struct agent *a, const char *p, size_t n)
{
    while (n > 0) {
        switch (a->ch) {
        case CH_RAW:
            return body_data(a, p, n);
        case CH_SIZE:
            if (*p == '\n') {
                a->ch_size[a->ch_size_len] = '\0';
                a->ch_left = strtoull(a->ch_size, NULL, 16);
                a->ch_size_len = 0;
                if (a->ch_left == 0) {
                    fprintf(stderr, "opagents: %s: stream ended\n", a->node);
                    return -1;
                }
                a->ch = CH_DATA;
            } else if (isxdigit((unsigned char)*p) && a->ch_size_len < sizeof(a->ch_size) - 1) {
                a->ch_size[a->ch_size_len++] = *p;
            }
            p++;
            n--;
            break;
        case CH_DATA: {
            size_t take = n < a->ch_left ? n : (size_t)a->ch_left;

            if (body_data(a, p, take) < 0)
                return -1;
            a->ch_left -= take;
            p += take;
            n -= take;
            if (a->ch_left == 0) {
                a->ch = CH_CRLF;
                a->ch_left = 2;
            }
            break;
        }
        case CH_CRLF:
            p++;
            n--;
            if (--a->ch_left == 0)
                a->ch = CH_SIZE;
            break;
        }
    }
    return 0;
}

static int headers(struct agent *a, const char *p, size_t n)
{
    size_t room = sizeof(a->hdr) - 1 - a->hdr_len, take = n < room ? n : room;
    size_t old = a->hdr_len, hl;
    char *end;
    int status;

    memcpy(a->hdr + a->hdr_len, p, take);
    a->hdr_len += take;
    a->hdr[a->hdr_len] = '\0';
    end = strstr(a->hdr, "\r\n\r\n");
    if (end == NULL) {
        if (a->hdr_len == sizeof(a->hdr) - 1) {
            fprintf(stderr, "opagents: %s: response headers too long\n", a->node);
            return -1;
        }
        return 0;
    }
    hl = (size_t)(end - a->hdr) + 4;
    if (sscanf(a->hdr, "HTTP/1.%*d %d", &status) != 1 || status != 200) {
        fprintf(stderr, "opagents: %s: HTTP answer: %.300s\n", a->node, a->hdr);
        return -1;
    }
    a->ch = strcasestr(a->hdr, "transfer-encoding: chunked") ? CH_SIZE : CH_RAW;
    a->st = ST_BODY;
    /* what came after the headers in this read */
    return body(a, p + (hl - old), n - (hl - old));
}

/* ------------------------------------------------------------------ connections */

static void ep_mod(struct agent *a, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.u32 = (uint32_t)a->idx};

    epoll_ctl(epfd, EPOLL_CTL_MOD, a->fd, &e);
}

static void drop(struct agent *a, const char *why)
{
    if (a->fd >= 0) {
        fprintf(stderr, "opagents: %s: stream closed (%s), reconnecting with since=%llu\n", a->node,
                why, (unsigned long long)a->version);
        epoll_ctl(epfd, EPOLL_CTL_DEL, a->fd, NULL);
        if (a->ssl)
            SSL_free(a->ssl);
        close(a->fd);
    }
    a->ssl = NULL;
    a->fd = -1;
    a->st = ST_IDLE;
    a->line_len = 0;
    a->reconnects++;
    a->reconnect_at = now_ns() + RECONNECT_NS;
}

static int start(struct agent *a)
{
    char path[512], tok[8192];
    FILE *f;
    size_t tl;
    int one = 1;
    struct epoll_event e = {.events = EPOLLOUT, .data.u32 = (uint32_t)a->idx};

    snprintf(path, sizeof(path), "%s/%s.token", tokdir, a->node);
    f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "opagents: %s: %m\n", path);
        return -1;
    }
    tl = fread(tok, 1, sizeof(tok) - 1, f);
    fclose(f);
    while (tl > 0 && isspace((unsigned char)tok[tl - 1]))
        tl--;
    tok[tl] = '\0';
    if (a->version > 0)
        snprintf(path, sizeof(path), "/v1/config?node=%s&since=%llu", a->node,
                 (unsigned long long)a->version);
    else
        snprintf(path, sizeof(path), "/v1/config?node=%s", a->node);
    a->req_len = (size_t)snprintf(a->req, sizeof(a->req),
                                  "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                                  "Accept: application/x-ndjson\r\nUser-Agent: opagents\r\n\r\n",
                                  path, sni, tok);
    a->req_off = 0;
    a->hdr_len = 0;
    a->ch_size_len = 0;
    a->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (a->fd < 0)
        return -1;
    setsockopt(a->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(a->fd, (struct sockaddr *)&op_addr, sizeof(op_addr)) < 0 && errno != EINPROGRESS) {
        close(a->fd);
        a->fd = -1;
        return -1;
    }
    a->st = ST_CONNECT;
    epoll_ctl(epfd, EPOLL_CTL_ADD, a->fd, &e);
    return 0;
}

static void on_io(struct agent *a)
{
    char buf[65536];

    now_cache = now_ns();
    if (a->st == ST_CONNECT) {
        int err = 0;
        socklen_t l = sizeof(err);

        getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err != 0) {
            drop(a, strerror(err));
            return;
        }
        if (ctx) {
            a->ssl = SSL_new(ctx);
            SSL_set_fd(a->ssl, a->fd);
            SSL_set_tlsext_host_name(a->ssl, sni);
            SSL_set1_host(a->ssl, sni);
            a->st = ST_HANDSHAKE;
        } else {
            a->st = ST_SEND;
        }
    }
    if (a->st == ST_HANDSHAKE) {
        int r = SSL_connect(a->ssl);

        if (r != 1) {
            int e = SSL_get_error(a->ssl, r);

            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                ep_mod(a, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
                return;
            }
            ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
            drop(a, buf);
            return;
        }
        a->st = ST_SEND;
    }
    if (a->st == ST_SEND) {
        while (a->req_off < a->req_len) {
            ssize_t w;

            if (a->ssl) {
                int r = SSL_write(a->ssl, a->req + a->req_off, (int)(a->req_len - a->req_off));

                if (r <= 0) {
                    int e = SSL_get_error(a->ssl, r);

                    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                        ep_mod(a, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
                        return;
                    }
                    drop(a, "write failed");
                    return;
                }
                w = r;
            } else {
                w = write(a->fd, a->req + a->req_off, a->req_len - a->req_off);
                if (w < 0 && errno == EAGAIN) {
                    ep_mod(a, EPOLLOUT);
                    return;
                }
                if (w <= 0) {
                    drop(a, "write failed");
                    return;
                }
            }
            a->req_off += (size_t)w;
        }
        a->st = ST_HEADERS;
        ep_mod(a, EPOLLIN);
    }
    for (;;) {
        ssize_t n;
        int r;

        if (a->ssl) {
            r = SSL_read(a->ssl, buf, sizeof(buf));
            if (r <= 0) {
                int e = SSL_get_error(a->ssl, r);

                if (e == SSL_ERROR_WANT_READ)
                    return;
                if (e == SSL_ERROR_WANT_WRITE) {
                    ep_mod(a, EPOLLIN | EPOLLOUT);
                    return;
                }
                drop(a, e == SSL_ERROR_ZERO_RETURN ? "closed by the operator" : "TLS read error");
                return;
            }
            n = r;
        } else {
            n = read(a->fd, buf, sizeof(buf));
            if (n < 0 && errno == EAGAIN)
                return;
            if (n <= 0) {
                drop(a, n == 0 ? "closed by the operator" : strerror(errno));
                return;
            }
        }
        now_cache = now_ns();
        if ((a->st == ST_HEADERS ? headers(a, buf, (size_t)n) : body(a, buf, (size_t)n)) < 0) {
            drop(a, "stream ended or HTTP error");
            return;
        }
    }
}

/* ------------------------------------------------------------------ readiness + stdin */

static bool ready_once(void)
{
    static const char req[] = "GET /healthz/ready HTTP/1.0\r\nHost: x\r\n\r\n";
    char buf[64] = {0};
    struct timeval tv = {.tv_sec = 2};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = false;

    if (fd < 0)
        return false;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&ready_addr, sizeof(ready_addr)) == 0 &&
        write(fd, req, sizeof(req) - 1) == (ssize_t)sizeof(req) - 1 &&
        read(fd, buf, sizeof(buf) - 1) > 12)
        ok = strncmp(buf + 9, "200", 3) == 0;
    close(fd);
    return ok;
}

static char inbuf[65536];
static size_t inlen;

/* returns false on quit/EOF */
static bool on_stdin(void)
{
    ssize_t n = read(0, inbuf + inlen, sizeof(inbuf) - 1 - inlen);
    char *p, *nl;

    if (n <= 0)
        return n < 0 && errno == EAGAIN;
    inlen += (size_t)n;
    inbuf[inlen] = '\0';
    p = inbuf;
    while ((nl = strchr(p, '\n')) != NULL) {
        *nl = '\0';
        if (strncmp(p, "mark ", 5) == 0) {
            mark_cmd(p + 5);
        } else if (strncmp(p, "unmark ", 7) == 0) {
            unmark_cmd(strtol(p + 7, NULL, 10));
        } else if (strcmp(p, "stats") == 0) {
            unsigned long long rc = 0, b = 0, ev = 0;

            for (int i = 0; i < n_agents; i++) {
                rc += agents[i].reconnects;
                b += agents[i].bytes;
                ev += agents[i].events;
            }
            printf("stats %llu %llu %llu\n", rc, b, ev);
            fflush(stdout);
        } else if (strcmp(p, "quit") == 0) {
            return false;
        }
        p = nl + 1;
    }
    inlen -= (size_t)(p - inbuf);
    memmove(inbuf, p, inlen);
    return true;
}

static void usage(void)
{
    fprintf(stderr, "usage: opagents --url http[s]://IP:PORT [--sni NAME] [--root PEM] "
                    "--ready IP:PORT --tokens DIR NODE...\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *url = NULL, *root = NULL, *ready = NULL;
    bool tls = false;
    int i;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};

    sni = "istiod.istio-system.svc";
    for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--url") == 0)
            url = argv[i + 1];
        else if (strcmp(argv[i], "--sni") == 0)
            sni = argv[i + 1];
        else if (strcmp(argv[i], "--root") == 0)
            root = argv[i + 1];
        else if (strcmp(argv[i], "--ready") == 0)
            ready = argv[i + 1];
        else if (strcmp(argv[i], "--tokens") == 0)
            tokdir = argv[i + 1];
        else
            usage();
    }
    if (url == NULL || ready == NULL || tokdir == NULL || i >= argc)
        usage();
    if (strncmp(url, "https://", 8) == 0) {
        tls = true;
        url += 8;
    } else if (strncmp(url, "http://", 7) == 0) {
        url += 7;
    } else {
        usage();
    }
    if (parse_addr(url, &op_addr) < 0 || parse_addr(ready, &ready_addr) < 0) {
        fprintf(stderr, "opagents: addresses must be IPv4:port\n");
        return 2;
    }
    if (tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (ctx == NULL || (root && SSL_CTX_load_verify_locations(ctx, root, NULL) != 1)) {
            fprintf(stderr, "opagents: TLS setup failed (root %s)\n", root ? root : "-");
            return 1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    n_agents = argc - i;
    agents = calloc((size_t)n_agents, sizeof(*agents));
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (agents == NULL || epfd < 0)
        return 1;
    for (int k = 0; k < n_agents; k++) {
        agents[k].idx = k;
        agents[k].node = argv[i + k];
        agents[k].fd = -1;
    }
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev);

    while (!ready_once()) {
        struct epoll_event e;

        /* wait 10 ms, but leave at once when told to quit */
        if (epoll_wait(epfd, &e, 1, 10) == 1 && !on_stdin())
            goto out;
    }
    printf("ready %llu\n", (unsigned long long)now_ns());
    fflush(stdout);
    for (int k = 0; k < n_agents; k++)
        if (start(&agents[k]) < 0)
            drop(&agents[k], "connect failed");
    for (;;) {
        struct epoll_event evs[128];
        int n = epoll_wait(epfd, evs, 128, 50);
        uint64_t now;

        for (int k = 0; k < n; k++) {
            if (evs[k].data.u32 == UINT32_MAX) {
                if (!on_stdin())
                    goto out;
                continue;
            }
            on_io(&agents[evs[k].data.u32]);
        }
        now = now_ns();
        for (int k = 0; k < n_agents; k++)
            if (agents[k].st == ST_IDLE && agents[k].reconnect_at <= now && start(&agents[k]) < 0)
                drop(&agents[k], "connect failed");
    }
out:
    for (int k = 0; k < n_agents; k++) {
        if (agents[k].ssl)
            SSL_free(agents[k].ssl);
        if (agents[k].fd >= 0)
            close(agents[k].fd);
        free(agents[k].line);
    }
    for (int k = 0; k < MAX_MARKS; k++)
        unmark_cmd(marks[k].used ? marks[k].id : -1);
    free(agents);
    SSL_CTX_free(ctx);
    return 0;
}
