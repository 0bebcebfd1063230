/*
 * loadgen: an IRC-over-TLS load generator for the chatroom benchmark.
 *
 * One thread, epoll, non-blocking sockets, OpenSSL.  N clients connect to
 * HOST:PORT with TLS (no certificate verification: the benchmark measures
 * throughput, not identity; --plain: plain-text TCP instead), register with NICK/USER, wait for 001, JOIN one
 * channel and wait until every client has seen its own JOIN.  Then K of them
 * (clients 0..K-1) send PRIVMSG to the channel, either as fast as the server
 * takes them (each sender keeps at most --window messages that have not yet
 * reached every other member) or at a fixed --rate per sender.
 *
 * Every message body is "BM <sender> <counter> <send time, CLOCK_MONOTONIC
 * ns> <padding>".  Each receiver checks that it gets every message of every
 * other sender exactly once and in per-sender order, and keeps a rolling hash
 * of the (sender, counter) sequence it saw.  Client K (the first one that
 * does not send) is the reference: it also keeps, for every sender s, the
 * hash of its sequence with s's messages left out, which is what sender s
 * itself must have seen (servers do not echo a message to its sender).  Equal
 * hashes mean every receiver saw the same total order.
 *
 * It reports one JSON object on stdout; progress goes to stderr.  Every phase
 * has a deadline and the whole run has a hard --timeout, so it always stops.
 * --fanout (chatroom only, docs/protocol-fanout.rst): every client that is
 * neither a sender nor the reference requests the capability
 * chatroom.invalid/fanout (with message-tags, server-time and echo-message)
 * and answers each "FANOUT #chan KEY epoch ..." with "FANOUT #chan START
 * epoch", so the host counts it as a multicast member and stops sending it
 * room events over TLS.  These keyed clients never read the group: they
 * stand for members whose datagrams cost the host nothing per member.  They
 * are not receivers here: expected deliveries, windows and order checks
 * count only the TLS members (the senders and the reference); real multicast
 * receivers are checked outside the generator (bench/run.py).
 *
 * If --server-pid is given it samples the server's CPU time and memory from
 * /proc at the start and end of the measured interval, and its own CPU time
 * (getrusage) over the same interval, so the report shows who was busy.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define RBUF_CAP (64 * 1024)
#define MAX_LINE 4096
#define HIST_US 1000000          /* 1 us buckets up to 1 s ... */
#define HIST_MS 1000000          /* ... then 1 ms buckets up to 1000 s */

enum cstate { C_IDLE, C_CONNECTING, C_HANDSHAKE, C_REGISTERING, C_JOINING,
              C_JOINED, C_CLOSED };
enum phase { P_CONNECT, P_SETTLE, P_WARMUP, P_MEASURE, P_DRAIN, P_LINGER, P_DONE };

typedef struct conn {
    int id;
    int fd;
    SSL *ssl;
    enum cstate state;
    uint32_t events;           /* epoll interest currently registered */
    int want_write_on_read;    /* SSL_write returned WANT_READ */
    int on_ready_list;
    char *rbuf;
    size_t rlen;
    char *wbuf;
    size_t wlen, woff, wcap;
    char nick[16];
    size_t nicklen;
    uint64_t hash;             /* rolling hash of the (sender, counter) order */
    uint64_t received;         /* distinct benchmark messages received */
    int keyed;                 /* --fanout: takes the key, answers START */
    int multicast;             /* the host answered MODE MULTICAST */
} conn;

/* ------------------------------------------------------------ options */
static const char *opt_host = "127.0.0.1";
static int opt_port = 0;
static int opt_clients = 100;
static int opt_senders = 10;
static double opt_rate = 0;            /* messages/s per sender, 0 = full speed */
static int opt_window = 32;            /* unacknowledged messages per sender */
static double opt_duration = 10;       /* measured seconds */
static double opt_warmup = 1;
static double opt_settle = 1;          /* after everyone joined */
static double opt_drain = 10;          /* max wait for in-flight messages */
static double opt_timeout = 180;       /* hard limit for the whole run */
static double opt_connect_timeout = 90;
static long opt_max_messages = 5000000; /* per sender */
static const char *opt_channel = "#bench";
static int opt_cpu = -1;
static int opt_server_pid = 0;
static int opt_payload = 64;           /* bytes of message body in total */
static int opt_nodelay = 0;
static int opt_parallel = 64;          /* clients setting up at the same time */
static const char *opt_nick_prefix = "b";
static int opt_verbose = 0;
static int opt_poke_ms = 200;          /* 0: never poke a stalled server */
static int opt_plain = 0;              /* plain-text IRC instead of TLS */
static int opt_fanout = 0;             /* non-receivers take multicast delivery */
static double opt_linger = 0;          /* after the report: stay connected until
                                          stdin closes, at most this long */
#define FANOUT_CAPS "message-tags server-time echo-message chatroom.invalid/fanout"

/* ------------------------------------------------------------- state */
static conn *conns;
static int ep;
static SSL_CTX *ctx;
static enum phase phase = P_CONNECT;
static int n_started, n_joined, n_closed_unexpected, n_setting_up;
static char fatal_msg[512];
/* --fanout: keyed clients, how many the host switched to multicast, KEY
 * lines answered, and benchmark messages a keyed client still got over TLS
 * after its MODE MULTICAST (should stay 0: the host sends it none). */
static int n_keyed, n_multicast;
static uint64_t fanout_keys, fanout_tls_after_switch, fanout_tls_before_switch;

/* per sender */
static uint64_t *sent;          /* messages formatted (next counter) */
static uint64_t *acked;         /* counters below this reached everyone */
static uint32_t *ackring;       /* [s * ring + c % ring] receivers so far */
static uint32_t ring;           /* power of two >= window */
static int64_t *next_due;       /* rate mode */
static uint64_t *sent_in_window;
static int64_t *last_ack_ns;    /* when acked[s] last advanced */
static int64_t *last_poke_ns;
/* per receiver x sender */
static int64_t *maxseen;        /* [r*K+s] highest counter seen, -1 none */
static uint64_t *nrecv;         /* [r*K+s] distinct received */
static uint8_t **seen;          /* [r*K+s] bitmap */
static size_t *seencap;         /* bits */
static uint64_t *excl_hash;     /* reference receiver: hash without s */
static int ref_id;

/* totals */
static uint64_t deliveries_total, deliveries_in_window, duplicates,
    out_of_order, bogus, self_echo, late_sends, hist_count, stall_pokes;
static int64_t lat_max_ns;
static uint32_t *hist;
static int drain_timed_out;
static int64_t t_begin, t_joined, t_warm, t0, t1, t_drained;

/* /proc samples */
typedef struct sample { int ok; double cpu_s; long rss_kb, hwm_kb, anon_kb; } sample;
static sample s_base, s_joined, s_t0, s_t1, s_end;
static struct rusage ru_t0, ru_t1, ru_end;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void logmsg(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void fail(const char *fmt, ...) {
    if (fatal_msg[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fatal_msg, sizeof fatal_msg, fmt, ap);
    va_end(ap);
    logmsg("error: %s", fatal_msg);
    phase = P_DONE;
}

static void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) { perror("calloc"); exit(3); }
    return p;
}

static sample read_proc(void) {
    sample s = {0};
    if (!opt_server_pid) return s;
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", opt_server_pid);
    FILE *f = fopen(path, "r");
    if (!f) return s;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');   /* comm may contain spaces */
    if (!p) return s;
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt
       majflt cmajflt utime(14) stime(15) */
    unsigned long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &ut, &st) != 2)
        return s;
    s.cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    snprintf(path, sizeof path, "/proc/%d/status", opt_server_pid);
    f = fopen(path, "r");
    if (!f) return s;
    while (fgets(buf, sizeof buf, f)) {
        if (!strncmp(buf, "VmRSS:", 6)) s.rss_kb = atol(buf + 6);
        else if (!strncmp(buf, "VmHWM:", 6)) s.hwm_kb = atol(buf + 6);
        else if (!strncmp(buf, "RssAnon:", 8)) s.anon_kb = atol(buf + 8);
    }
    fclose(f);
    s.ok = 1;
    return s;
}

static double ru_cpu(const struct rusage *r) {
    return r->ru_utime.tv_sec + r->ru_utime.tv_usec / 1e6 +
           r->ru_stime.tv_sec + r->ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------ epoll */
static void set_events(conn *c, uint32_t ev) {
    if (c->fd < 0 || c->events == ev) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) < 0) perror("epoll_ctl mod");
    c->events = ev;
}

static void close_conn(conn *c, const char *why) {
    if (c->state == C_CLOSED) return;
    if (phase < P_DONE) {
        n_closed_unexpected++;
        fail("client %d closed: %s", c->id, why);
    }
    if (c->state > C_IDLE && c->state < C_JOINED) n_setting_up--;
    if (c->ssl) { SSL_free(c->ssl); c->ssl = NULL; }
    if (c->fd >= 0) { close(c->fd); c->fd = -1; }
    c->state = C_CLOSED;
}

/* ------------------------------------------------------------ output */
static void wreserve(conn *c, size_t extra) {
    if (c->woff && c->woff == c->wlen) c->woff = c->wlen = 0;
    if (c->wlen + extra <= c->wcap) return;
    if (c->woff) {   /* compact */
        memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
        c->wlen -= c->woff;
        c->woff = 0;
        if (c->wlen + extra <= c->wcap) return;
    }
    size_t cap = c->wcap ? c->wcap : 4096;
    while (cap < c->wlen + extra) cap *= 2;
    c->wbuf = realloc(c->wbuf, cap);
    if (!c->wbuf) { perror("realloc"); exit(3); }
    c->wcap = cap;
}

static void wappend(conn *c, const char *s, size_t n) {
    wreserve(c, n);
    memcpy(c->wbuf + c->wlen, s, n);
    c->wlen += n;
}

static void wprintf(conn *c, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) wappend(c, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static int ssl_err(conn *c, int r, const char *what) {
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return e;
    char buf[256] = "";
    unsigned long le = ERR_get_error();
    if (le) ERR_error_string_n(le, buf, sizeof buf);
    ERR_clear_error();
    char why[400];
    snprintf(why, sizeof why, "%s: ssl error %d%s%s%s", what, e,
             buf[0] ? " (" : "", buf, buf[0] ? ")" : "");
    if (e == SSL_ERROR_SYSCALL && errno)
        snprintf(why, sizeof why, "%s: %s", what, strerror(errno));
    if (e == SSL_ERROR_ZERO_RETURN) snprintf(why, sizeof why, "%s: EOF", what);
    close_conn(c, why);
    return -1;
}

static void flush(conn *c) {
    if (c->state == C_CLOSED || c->state < C_REGISTERING) return;
    c->want_write_on_read = 0;
    while (c->woff < c->wlen) {
        size_t n = c->wlen - c->woff;
        if (opt_plain) {
            ssize_t w = send(c->fd, c->wbuf + c->woff, n, MSG_NOSIGNAL);
            if (w > 0) { c->woff += (size_t)w; continue; }
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
                set_events(c, EPOLLIN | EPOLLOUT);
                return;
            }
            char why[128];
            snprintf(why, sizeof why, "write: %s", w < 0 ? strerror(errno) : "EOF");
            close_conn(c, why);
            return;
        }
        int r = SSL_write(c->ssl, c->wbuf + c->woff, n > 65536 ? 65536 : (int)n);
        if (r > 0) { c->woff += (size_t)r; continue; }
        int e = ssl_err(c, r, "write");
        if (e < 0) return;
        if (e == SSL_ERROR_WANT_WRITE) { set_events(c, EPOLLIN | EPOLLOUT); return; }
        c->want_write_on_read = 1;
        set_events(c, EPOLLIN);
        return;
    }
    c->woff = c->wlen = 0;
    set_events(c, EPOLLIN);
}

/* ------------------------------------------------------------ input */
static inline uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
    h *= 0xBF58476D1CE4E5B9ULL;
    return h ^ (h >> 31);
}

static inline const char *parse_u64(const char *p, const char *end, uint64_t *out) {
    uint64_t v = 0;
    const char *s = p;
    while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
    if (p == s) return NULL;
    *out = v;
    return p;
}

static void hist_add(int64_t ns) {
    if (ns < 0) ns = 0;
    if (ns > lat_max_ns) lat_max_ns = ns;
    int64_t us = ns / 1000;
    size_t b;
    if (us < HIST_US) b = (size_t)us;
    else {
        int64_t ms = ns / 1000000;
        b = HIST_US + (size_t)(ms < HIST_MS ? ms : HIST_MS - 1);
    }
    hist[b]++;
    hist_count++;
}

/* Clients that check deliveries: all of them, or with --fanout only the TLS
 * members (the senders and the reference, ids 0..K). */
static int n_receivers(void) {
    return opt_fanout ? opt_senders + 1 : opt_clients;
}

static void on_bench_message(conn *c, const char *p, const char *end, int64_t now) {
    uint64_t s, ctr, ts;
    if (!(p = parse_u64(p, end, &s)) || p >= end || *p++ != ' ' ||
        !(p = parse_u64(p, end, &ctr)) || p >= end || *p++ != ' ' ||
        !(p = parse_u64(p, end, &ts)) || s >= (uint64_t)opt_senders) {
        bogus++;
        return;
    }
    if ((int)s == c->id) { self_echo++; return; }
    if (ctr >= sent[s]) { bogus++; return; }
    size_t k = (size_t)c->id * opt_senders + s;
    if (ctr >= seencap[k]) {
        size_t nc = seencap[k] ? seencap[k] : 8192;
        while (nc <= ctr) nc *= 2;
        seen[k] = realloc(seen[k], nc / 8);
        if (!seen[k]) { perror("realloc"); exit(3); }
        memset(seen[k] + seencap[k] / 8, 0, (nc - seencap[k]) / 8);
        seencap[k] = nc;
    }
    uint8_t bit = (uint8_t)(1u << (ctr & 7));
    if (seen[k][ctr >> 3] & bit) { duplicates++; return; }
    seen[k][ctr >> 3] |= bit;
    if ((int64_t)ctr < maxseen[k]) out_of_order++;
    else maxseen[k] = (int64_t)ctr;
    nrecv[k]++;
    c->received++;
    uint64_t v = (s << 40) | ctr;
    c->hash = mix(c->hash, v);
    if (c->id == ref_id)
        for (int x = 0; x < opt_senders; x++)
            if ((uint64_t)x != s) excl_hash[x] = mix(excl_hash[x], v);
    deliveries_total++;
    if (phase == P_MEASURE) deliveries_in_window++;
    if (t0 && (int64_t)ts >= t0) hist_add(now - (int64_t)ts);
    /* acknowledgement: counter ctr has now reached one more receiver */
    if (ctr >= acked[s] && ctr - acked[s] < ring) {
        uint32_t *slot = &ackring[s * ring + (ctr & (ring - 1))];
        (*slot)++;
        uint32_t need = (uint32_t)n_receivers() - 1;
        while (acked[s] < sent[s]) {
            slot = &ackring[s * ring + (acked[s] & (ring - 1))];
            if (*slot < need) break;
            *slot = 0;
            acked[s]++;
            last_ack_ns[s] = now;
        }
    }
}

static void on_line(conn *c, const char *line, size_t len, int64_t now) {
    const char *p = line, *end = line + len;
    const char *prefix = NULL;
    size_t prefixlen = 0;
    if (p < end && *p == '@') {      /* tags: skip */
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        if (!sp) return;
        p = sp + 1;
    }
    if (p < end && *p == ':') {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        if (!sp) return;
        prefix = p + 1;
        prefixlen = (size_t)(sp - prefix);
        p = sp + 1;
    }
    const char *cmd = p;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    size_t cmdlen = sp ? (size_t)(sp - cmd) : (size_t)(end - cmd);
    const char *args = sp ? sp + 1 : end;
    if (cmdlen == 7 && !memcmp(cmd, "PRIVMSG", 7)) {
        const char *t = memmem(args, (size_t)(end - args), " :", 2);
        if (t && end - t >= 5 && !memcmp(t + 2, "BM ", 3)) {
            if (c->keyed) {   /* not a receiver: count, do not check */
                if (c->multicast) fanout_tls_after_switch++;
                else fanout_tls_before_switch++;
            } else on_bench_message(c, t + 5, end, now);
        }
        return;
    }
    if (cmdlen == 6 && !memcmp(cmd, "FANOUT", 6) && c->keyed) {
        /* "#chan KEY epoch ..." -> "FANOUT #chan START epoch";
           "#chan MODE MULTICAST seq" -> switched */
        const char *a = args, *e = end;
        const char *sp1 = memchr(a, ' ', (size_t)(e - a));
        if (!sp1) return;
        const char *w = sp1 + 1;
        const char *sp2 = memchr(w, ' ', (size_t)(e - w));
        if (!sp2) return;
        if (sp2 - w == 3 && !memcmp(w, "KEY", 3)) {
            const char *ep0 = sp2 + 1;
            const char *sp3 = memchr(ep0, ' ', (size_t)(e - ep0));
            size_t eplen = sp3 ? (size_t)(sp3 - ep0) : (size_t)(e - ep0);
            wprintf(c, "FANOUT %.*s START %.*s\r\n", (int)(sp1 - a), a, (int)eplen, ep0);
            fanout_keys++;
        } else if (sp2 - w == 4 && !memcmp(w, "MODE", 4) && e - sp2 > 10 &&
                   !memcmp(sp2 + 1, "MULTICAST", 9) && !c->multicast) {
            c->multicast = 1;
            n_multicast++;
        }
        return;
    }
    if (cmdlen == 3 && !memcmp(cmd, "CAP", 3) && c->keyed &&
        memmem(args, (size_t)(end - args), " NAK ", 5)) {
        close_conn(c, "the server refused the fan-out capabilities (" FANOUT_CAPS
                      "): is it chatroom started with --fanout?");
        return;
    }
    if (cmdlen == 4 && !memcmp(cmd, "FAIL", 4) && c->keyed) {
        char why[300];
        snprintf(why, sizeof why, "server said: %.*s", (int)(len > 250 ? 250 : len), line);
        close_conn(c, why);
        return;
    }
    if (cmdlen == 4 && !memcmp(cmd, "PING", 4)) {
        wappend(c, "PONG ", 5);
        wappend(c, args, (size_t)(end - args));
        wappend(c, "\r\n", 2);
        return;
    }
    if (cmdlen == 3 && !memcmp(cmd, "001", 3) && c->state == C_REGISTERING) {
        c->state = C_JOINING;
        wprintf(c, "JOIN %s\r\n", opt_channel);
        return;
    }
    if (cmdlen == 4 && !memcmp(cmd, "JOIN", 4) && c->state == C_JOINING && prefix &&
        prefixlen >= c->nicklen && !memcmp(prefix, c->nick, c->nicklen) &&
        (prefixlen == c->nicklen || prefix[c->nicklen] == '!' ||
         prefix[c->nicklen] == '@')) {
        c->state = C_JOINED;
        n_joined++;
        n_setting_up--;
        return;
    }
    if (cmdlen == 5 && !memcmp(cmd, "ERROR", 5)) {
        char why[300];
        snprintf(why, sizeof why, "server said: %.*s", (int)(len > 250 ? 250 : len), line);
        close_conn(c, why);
        return;
    }
    /* registration or join refused (422 no MOTD and the like are harmless) */
    static const char *refusals =
        " 403 405 431 432 433 436 437 451 461 462 464 465 471 473 474 475 476 477 489 ";
    char code[6] = {' ', 0, 0, 0, ' ', 0};
    if (cmdlen == 3) memcpy(code + 1, cmd, 3);
    if (cmdlen == 3 && c->state < C_JOINED && strstr(refusals, code)) {
        char why[300];
        snprintf(why, sizeof why, "refused: %.*s", (int)(len > 250 ? 250 : len), line);
        close_conn(c, why);
    }
}

static void handle_input(conn *c) {
    int64_t now = now_ns();
    for (int iter = 0; iter < 64; iter++) {
        if (c->state == C_CLOSED) return;
        int r;
        if (opt_plain) {
            ssize_t got = recv(c->fd, c->rbuf + c->rlen, RBUF_CAP - c->rlen, 0);
            if (got <= 0) {
                if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                    return;
                char why[128];
                snprintf(why, sizeof why, "read: %s", got < 0 ? strerror(errno) : "EOF");
                close_conn(c, why);
                return;
            }
            r = (int)got;
        } else r = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(RBUF_CAP - c->rlen));
        if (r <= 0) {
            int e = ssl_err(c, r, "read");
            if (e == SSL_ERROR_WANT_WRITE) set_events(c, EPOLLIN | EPOLLOUT);
            if (c->want_write_on_read && e == SSL_ERROR_WANT_READ) flush(c);
            return;
        }
        c->rlen += (size_t)r;
        char *start = c->rbuf, *end = c->rbuf + c->rlen, *nl;
        while ((nl = memchr(start, '\n', (size_t)(end - start)))) {
            size_t len = (size_t)(nl - start);
            if (len && start[len - 1] == '\r') len--;
            on_line(c, start, len, now);
            if (c->state == C_CLOSED) return;
            start = nl + 1;
        }
        c->rlen = (size_t)(end - start);
        if (c->rlen > MAX_LINE) { close_conn(c, "line too long"); return; }
        if (c->rlen && start != c->rbuf) memmove(c->rbuf, start, c->rlen);
    }
    /* still more to read: come back without waiting in epoll */
    c->on_ready_list = 1;
}

/* ------------------------------------------------------------ connect */
static void start_conn(conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) { fail("socket: %s", strerror(errno)); return; }
    if (opt_nodelay) {
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt_port)};
    if (inet_pton(AF_INET, opt_host, &a.sin_addr) != 1) { fail("bad host %s", opt_host); return; }
    int r = connect(c->fd, (struct sockaddr *)&a, sizeof a);
    if (r < 0 && errno != EINPROGRESS) { fail("connect: %s", strerror(errno)); return; }
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
    c->events = EPOLLOUT;
    c->state = C_CONNECTING;
    n_started++;
    n_setting_up++;
}

static void do_handshake(conn *c) {
    int r = opt_plain ? 1 : SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->state = C_REGISTERING;
        if (c->keyed)   /* CAP REQ holds registration until CAP END */
            wprintf(c, "CAP REQ :" FANOUT_CAPS "\r\n");
        wprintf(c, "NICK %s\r\nUSER %s 0 * :loadgen %d\r\n", c->nick, c->nick, c->id);
        if (c->keyed) wprintf(c, "CAP END\r\n");
        flush(c);
        return;
    }
    int e = ssl_err(c, r, "handshake");
    if (e == SSL_ERROR_WANT_READ) set_events(c, EPOLLIN);
    else if (e == SSL_ERROR_WANT_WRITE) set_events(c, EPOLLIN | EPOLLOUT);
}

static void on_event(conn *c, uint32_t ev) {
    if (c->state == C_CLOSED) return;
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            char why[128];
            snprintf(why, sizeof why, "connect: %s", strerror(err));
            close_conn(c, why);
            return;
        }
        if (!opt_plain) {
            c->ssl = SSL_new(ctx);
            SSL_set_fd(c->ssl, c->fd);
            SSL_set_connect_state(c->ssl);
        }
        c->state = C_HANDSHAKE;
        do_handshake(c);
        return;
    }
    if (c->state == C_HANDSHAKE) { do_handshake(c); return; }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) handle_input(c);
    if (c->state == C_CLOSED) return;
    if ((ev & EPOLLOUT) || c->wlen > c->woff) flush(c);
}

/* ------------------------------------------------------------ sending */
static char pad[1024];

static void append_message(conn *c, int s, int64_t now) {
    char buf[1400];
    int n = snprintf(buf, sizeof buf, "PRIVMSG %s :BM %d %llu %lld", opt_channel, s,
                     (unsigned long long)sent[s], (long long)now);
    int body = n - (int)strlen("PRIVMSG  :") - (int)strlen(opt_channel);
    if (body < opt_payload) {
        int extra = opt_payload - body - 1;
        if (extra > (int)sizeof pad) extra = (int)sizeof pad;
        if (extra > 0) {
            buf[n++] = ' ';
            memcpy(buf + n, pad, (size_t)extra);
            n += extra;
        }
    }
    buf[n++] = '\r';
    buf[n++] = '\n';
    wappend(c, buf, (size_t)n);
    sent[s]++;
    if (phase == P_MEASURE) sent_in_window[s]++;
}

/* Some servers (ngircd 26 with GnuTLS) can leave a sender's last commands
 * unprocessed until more input arrives from that sender.  A sender whose
 * messages have not all arrived and whose acknowledgements have not moved for
 * --poke-ms sends a PING, as a live client would send something sooner or
 * later.  The report counts these pokes. */
static void poke_stalled(int s, conn *c, int64_t now) {
    if (opt_poke_ms <= 0 || acked[s] >= sent[s]) return;
    int64_t idle = (int64_t)opt_poke_ms * 1000000;
    if (now - last_ack_ns[s] < idle || now - last_poke_ns[s] < idle) return;
    if (opt_verbose)
        logmsg("poke sender %d: %llu unacknowledged, %zu bytes unsent here", s,
               (unsigned long long)(sent[s] - acked[s]), c->wlen - c->woff);
    wappend(c, "PING :poke\r\n", 12);
    last_poke_ns[s] = now;
    stall_pokes++;
    flush(c);
}

static void pump_senders(int64_t now) {
    if (phase == P_DRAIN)
        for (int s = 0; s < opt_senders; s++)
            if (conns[s].state == C_JOINED) poke_stalled(s, &conns[s], now);
    if (phase != P_WARMUP && phase != P_MEASURE) return;
    for (int s = 0; s < opt_senders; s++) {
        conn *c = &conns[s];
        if (c->state != C_JOINED) continue;
        poke_stalled(s, c, now);
        if (c->state != C_JOINED) continue;
        int wrote = 0;
        if (opt_rate <= 0) {
            while (sent[s] - acked[s] < (uint64_t)opt_window &&
                   sent[s] < (uint64_t)opt_max_messages) {
                append_message(c, s, now);
                wrote = 1;
            }
        } else {
            int64_t period = (int64_t)(1e9 / opt_rate);
            for (int b = 0; b < 1000 && next_due[s] <= now; b++) {
                if (sent[s] - acked[s] < ring && sent[s] < (uint64_t)opt_max_messages) {
                    append_message(c, s, now);
                    wrote = 1;
                } else {
                    late_sends++;
                }
                next_due[s] += period;
            }
        }
        if (wrote) flush(c);
    }
}

static int64_t next_rate_due(void) {
    int64_t m = INT64_MAX;
    if (opt_rate > 0 && (phase == P_WARMUP || phase == P_MEASURE))
        for (int s = 0; s < opt_senders; s++)
            if (next_due[s] < m) m = next_due[s];
    return m;
}

static int all_acked(void) {
    for (int s = 0; s < opt_senders; s++)
        if (acked[s] < sent[s]) return 0;
    return 1;
}

/* ------------------------------------------------------------ report */
static double hist_pct(double q) {
    if (!hist_count) return 0;
    uint64_t target = (uint64_t)(q * (double)hist_count);
    if (target >= hist_count) target = hist_count - 1;
    uint64_t acc = 0;
    for (size_t b = 0; b < HIST_US + HIST_MS; b++) {
        acc += hist[b];
        if (acc > target)
            return b < HIST_US ? (double)b / 1000.0 + 0.0005
                               : (double)(b - HIST_US) + 0.5;  /* ms */
    }
    return (double)lat_max_ns / 1e6;
}

static void print_sample(const char *name, sample *s, int comma) {
    if (!s->ok) { printf("    \"%s\": null%s\n", name, comma ? "," : ""); return; }
    printf("    \"%s\": {\"cpu_s\": %.3f, \"rss_kb\": %ld, \"hwm_kb\": %ld, "
           "\"anon_kb\": %ld}%s\n", name, s->cpu_s, s->rss_kb, s->hwm_kb, s->anon_kb,
           comma ? "," : "");
}

static void report(void) {
    uint64_t total_sent = 0, sent_win = 0, expected = 0, got = 0;
    for (int s = 0; s < opt_senders; s++) {
        total_sent += sent[s];
        sent_win += sent_in_window[s];
    }
    for (int r = 0; r < n_receivers(); r++)
        for (int s = 0; s < opt_senders; s++) {
            if (r == s) continue;
            expected += sent[s];
            got += nrecv[(size_t)r * opt_senders + s];
        }
    uint64_t lost = expected - got;
    int order_mismatch = 0, order_checked = 0;
    if (opt_senders > 0 && ref_id < opt_clients && lost == 0 && !fatal_msg[0]) {
        order_checked = 1;
        for (int r = 0; r < n_receivers(); r++) {
            uint64_t want = r < opt_senders ? excl_hash[r] : conns[ref_id].hash;
            if (conns[r].hash != want) order_mismatch++;
        }
    }
    double dur = (t1 > t0) ? (double)(t1 - t0) / 1e9 : 0;
    double gen_cpu = ru_cpu(&ru_t1) - ru_cpu(&ru_t0);
    double srv_cpu = (s_t0.ok && s_t1.ok) ? s_t1.cpu_s - s_t0.cpu_s : -1;
    printf("{\n");
    printf("  \"ok\": %s,\n", fatal_msg[0] ? "false" : "true");
    printf("  \"error\": ");
    if (fatal_msg[0]) {
        putchar('"');
        for (char *p = fatal_msg; *p; p++) {
            if (*p == '"' || *p == '\\') putchar('\\');
            putchar((unsigned char)*p < 32 ? ' ' : *p);
        }
        printf("\",\n");
    } else printf("null,\n");
    printf("  \"clients\": %d, \"senders\": %d, \"rate_per_sender\": %g, \"window\": %d,\n",
           opt_clients, opt_senders, opt_rate, opt_window);
    printf("  \"payload_bytes\": %d, \"nodelay\": %s, \"tls\": %s,\n", opt_payload,
           opt_nodelay ? "true" : "false", opt_plain ? "false" : "true");
    printf("  \"setup_s\": %.3f, \"duration_s\": %.3f, \"drain_s\": %.3f,\n",
           t_joined ? (double)(t_joined - t_begin) / 1e9 : -1.0, dur,
           t_drained > t1 && t1 ? (double)(t_drained - t1) / 1e9 : 0.0);
    printf("  \"clients_joined\": %d,\n", n_joined);
    printf("  \"fanout\": %s, \"receivers\": %d, \"fanout_keyed\": %d, "
           "\"fanout_multicast_members\": %d, \"fanout_keys\": %llu,\n",
           opt_fanout ? "true" : "false", n_receivers(), n_keyed, n_multicast,
           (unsigned long long)fanout_keys);
    printf("  \"fanout_tls_messages_before_switch\": %llu, "
           "\"fanout_tls_messages_after_switch\": %llu,\n",
           (unsigned long long)fanout_tls_before_switch,
           (unsigned long long)fanout_tls_after_switch);
    printf("  \"sent_per_sender\": [");
    for (int s = 0; s < opt_senders; s++)
        printf("%s%llu", s ? ", " : "", (unsigned long long)sent[s]);
    printf("],\n");
    /* CLOCK_MONOTONIC ns, the clock of the send stamps in message bodies:
       run.py lines up outside receivers' arrival times with these. */
    printf("  \"clock_ns\": {\"begin\": %lld, \"joined\": %lld, \"warmup\": %lld, "
           "\"measure_start\": %lld, \"measure_end\": %lld, \"drained\": %lld},\n",
           (long long)t_begin, (long long)t_joined, (long long)t_warm, (long long)t0,
           (long long)t1, (long long)t_drained);
    printf("  \"messages_sent\": %llu, \"messages_per_s\": %.1f,\n",
           (unsigned long long)total_sent, dur > 0 ? (double)sent_win / dur : 0);
    printf("  \"deliveries\": %llu, \"deliveries_per_s\": %.1f,\n",
           (unsigned long long)deliveries_total,
           dur > 0 ? (double)deliveries_in_window / dur : 0);
    printf("  \"expected_deliveries\": %llu, \"lost\": %llu, \"duplicated\": %llu, "
           "\"out_of_order\": %llu,\n",
           (unsigned long long)expected, (unsigned long long)lost,
           (unsigned long long)duplicates, (unsigned long long)out_of_order);
    printf("  \"total_order_checked\": %s, \"total_order_mismatches\": %d,\n",
           order_checked ? "true" : "false", order_mismatch);
    printf("  \"bogus\": %llu, \"self_echo\": %llu, \"late_sends\": %llu, "
           "\"stall_pokes\": %llu, \"drain_timed_out\": %s,\n",
           (unsigned long long)bogus, (unsigned long long)self_echo,
           (unsigned long long)late_sends, (unsigned long long)stall_pokes,
           drain_timed_out ? "true" : "false");
    printf("  \"latency_samples\": %llu, \"latency_ms\": {\"p50\": %.3f, \"p99\": %.3f, "
           "\"p999\": %.3f, \"max\": %.3f},\n",
           (unsigned long long)hist_count, hist_pct(0.50), hist_pct(0.99),
           hist_pct(0.999), (double)lat_max_ns / 1e6);
    printf("  \"generator_cpu_s\": %.3f, \"generator_cpu_util\": %.3f, "
           "\"generator_cpu_total_s\": %.3f,\n",
           gen_cpu, dur > 0 ? gen_cpu / dur : 0, ru_cpu(&ru_end));
    printf("  \"generator_cpu_s_per_1000_deliveries\": %.6f,\n",
           deliveries_in_window ? gen_cpu * 1000.0 / (double)deliveries_in_window : -1);
    printf("  \"server_cpu_s\": %.3f, \"server_cpu_util\": %.3f,\n", srv_cpu,
           dur > 0 && srv_cpu >= 0 ? srv_cpu / dur : -1);
    printf("  \"server_cpu_s_per_1000_deliveries\": %.6f,\n",
           srv_cpu >= 0 && deliveries_in_window ? srv_cpu * 1000.0 / (double)deliveries_in_window : -1);
    printf("  \"server\": {\n");
    print_sample("baseline", &s_base, 1);
    print_sample("joined", &s_joined, 1);
    print_sample("measure_start", &s_t0, 1);
    print_sample("measure_end", &s_t1, 1);
    print_sample("end", &s_end, 0);
    printf("  }\n}\n");
    fflush(stdout);
}

/* ------------------------------------------------------------ main */
static void usage(void) {
    fprintf(stderr,
        "usage: loadgen --port P [--host 127.0.0.1] [--clients N] [--senders K]\n"
        "  [--rate MSG_PER_S_PER_SENDER (0 = full speed)] [--window W]\n"
        "  [--duration S] [--warmup S] [--settle S] [--drain S] [--timeout S]\n"
        "  [--connect-timeout S] [--max-messages PER_SENDER] [--channel #c]\n"
        "  [--cpu CORE] [--server-pid PID] [--payload BYTES] [--nodelay]\n"
        "  [--parallel CLIENTS_SETTING_UP_AT_ONCE] [--nick-prefix P]\n"
        "  [--poke-ms MS (PING a stalled sender's server after MS; 0 = never)]\n"
        "  [--plain (plain-text IRC, no TLS)]\n"
        "  [--fanout (clients K+1.. take chatroom's multicast key and never read\n"
        "   the group; only the senders and the reference are checked)]\n"
        "  [--linger S (print the report, then keep every client in the room until\n"
        "   stdin closes, at most S seconds: no member leaves while outside\n"
        "   receivers catch up)] [--verbose]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (!strcmp(a, name) && v && (++i, 1))
        if (OPT("--host")) opt_host = v;
        else if (OPT("--port")) opt_port = atoi(v);
        else if (OPT("--clients")) opt_clients = atoi(v);
        else if (OPT("--senders")) opt_senders = atoi(v);
        else if (OPT("--rate")) opt_rate = atof(v);
        else if (OPT("--window")) opt_window = atoi(v);
        else if (OPT("--duration")) opt_duration = atof(v);
        else if (OPT("--warmup")) opt_warmup = atof(v);
        else if (OPT("--settle")) opt_settle = atof(v);
        else if (OPT("--drain")) opt_drain = atof(v);
        else if (OPT("--timeout")) opt_timeout = atof(v);
        else if (OPT("--connect-timeout")) opt_connect_timeout = atof(v);
        else if (OPT("--max-messages")) opt_max_messages = atol(v);
        else if (OPT("--channel")) opt_channel = v;
        else if (OPT("--cpu")) opt_cpu = atoi(v);
        else if (OPT("--server-pid")) opt_server_pid = atoi(v);
        else if (OPT("--payload")) opt_payload = atoi(v);
        else if (OPT("--parallel")) opt_parallel = atoi(v);
        else if (OPT("--nick-prefix")) opt_nick_prefix = v;
        else if (OPT("--poke-ms")) opt_poke_ms = atoi(v);
        else if (!strcmp(a, "--nodelay")) opt_nodelay = 1;
        else if (!strcmp(a, "--plain")) opt_plain = 1;
        else if (!strcmp(a, "--fanout")) opt_fanout = 1;
        else if (OPT("--linger")) opt_linger = atof(v);
        else if (!strcmp(a, "--verbose")) opt_verbose = 1;
        else usage();
#undef OPT
    }
    if (opt_port <= 0 || opt_clients < 2 || opt_senders < 0 ||
        opt_senders >= opt_clients || opt_window < 1 ||
        opt_parallel < 1 || opt_payload < 0 || opt_payload > 400 ||
        opt_duration < 0 || opt_timeout <= 0) {
        fprintf(stderr, "loadgen: bad options (need --port, 0 <= senders < clients)\n");
        usage();
    }
    signal(SIGPIPE, SIG_IGN);
    if (opt_cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(opt_cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) < 0)
            logmsg("warning: cannot pin to CPU %d: %s", opt_cpu, strerror(errno));
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)opt_clients + 64) {
        rl.rlim_cur = (rlim_t)opt_clients + 64;
        if (rl.rlim_max < rl.rlim_cur) rl.rlim_max = rl.rlim_cur;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            logmsg("warning: cannot raise open file limit: %s", strerror(errno));
    }

    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);  /* loopback benchmark only */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

    ep = epoll_create1(EPOLL_CLOEXEC);
    conns = xcalloc((size_t)opt_clients, sizeof *conns);
    for (int i = 0; i < opt_clients; i++) {
        conns[i].id = i;
        conns[i].fd = -1;
        conns[i].rbuf = malloc(RBUF_CAP);
        if (!conns[i].rbuf) { perror("malloc"); exit(3); }
        snprintf(conns[i].nick, sizeof conns[i].nick, "%s%d", opt_nick_prefix, i);
        conns[i].keyed = opt_fanout && i > opt_senders;   /* not a sender, not the reference */
        n_keyed += conns[i].keyed;
        conns[i].nicklen = strlen(conns[i].nick);
    }
    int K = opt_senders;
    ring = 1;
    while (ring < (uint32_t)opt_window) ring <<= 1;
    if (opt_rate > 0 && ring < 4096) ring = 4096;  /* rate mode: generous bound */
    sent = xcalloc((size_t)K, sizeof *sent);
    acked = xcalloc((size_t)K, sizeof *acked);
    sent_in_window = xcalloc((size_t)K, sizeof *sent_in_window);
    ackring = xcalloc((size_t)K * ring, sizeof *ackring);
    next_due = xcalloc((size_t)K, sizeof *next_due);
    last_ack_ns = xcalloc((size_t)K, sizeof *last_ack_ns);
    last_poke_ns = xcalloc((size_t)K, sizeof *last_poke_ns);
    excl_hash = xcalloc((size_t)K, sizeof *excl_hash);
    maxseen = xcalloc((size_t)opt_clients * K, sizeof *maxseen);
    nrecv = xcalloc((size_t)opt_clients * K, sizeof *nrecv);
    seen = xcalloc((size_t)opt_clients * K, sizeof *seen);
    seencap = xcalloc((size_t)opt_clients * K, sizeof *seencap);
    for (size_t i = 0; i < (size_t)opt_clients * K; i++) maxseen[i] = -1;
    hist = xcalloc(HIST_US + HIST_MS, sizeof *hist);
    ref_id = K;
    for (size_t i = 0; i < sizeof pad; i++) pad[i] = (char)('a' + i % 26);

    t_begin = now_ns();
    int64_t hard_deadline = t_begin + (int64_t)(opt_timeout * 1e9);
    int64_t phase_deadline = t_begin + (int64_t)(opt_connect_timeout * 1e9);
    s_base = read_proc();
    int next_to_start = 0;
    int64_t last_progress = t_begin;
    int reported = 0, stdin_closed = 0;
    struct epoll_event evs[256];
    conn **ready = xcalloc((size_t)opt_clients, sizeof *ready);

    logmsg("%d clients (%d senders, %s) -> %s:%d", opt_clients, K,
           opt_rate > 0 ? "fixed rate" : "full speed", opt_host, opt_port);
    while (phase != P_DONE) {
        int64_t now = now_ns();
        if (now >= hard_deadline) { fail("hard timeout of %.0f s reached", opt_timeout); break; }

        /* phase transitions */
        if (phase == P_CONNECT) {
            while (next_to_start < opt_clients && n_setting_up < opt_parallel && !fatal_msg[0])
                start_conn(&conns[next_to_start++]);
            if (n_joined == opt_clients && n_multicast == n_keyed) {
                t_joined = now;
                logmsg("all %d joined in %.2f s", opt_clients, (double)(now - t_begin) / 1e9);
                if (opt_fanout)
                    logmsg("%d of them switched to multicast delivery", n_multicast);
                phase = P_SETTLE;
                phase_deadline = now + (int64_t)(opt_settle * 1e9);
            } else if (now >= phase_deadline) {
                if (n_joined == opt_clients)
                    fail("only %d of %d keyed clients got MODE MULTICAST within %.0f s",
                         n_multicast, n_keyed, opt_connect_timeout);
                else
                    fail("only %d of %d clients joined within %.0f s", n_joined, opt_clients,
                         opt_connect_timeout);
                break;
            } else if (now - last_progress > 5000000000LL) {
                logmsg("%d of %d joined, %d of %d keyed in multicast", n_joined, opt_clients,
                       n_multicast, n_keyed);
                last_progress = now;
            }
        }
        if (phase == P_SETTLE && now >= phase_deadline) {
            s_joined = read_proc();
            phase = P_WARMUP;
            t_warm = now;
            phase_deadline = now + (int64_t)(opt_warmup * 1e9);
            for (int s = 0; s < K; s++) {  /* stagger the senders across one period */
                next_due[s] = now + (opt_rate > 0 ? (int64_t)(1e9 / opt_rate * s / K) : 0);
                last_ack_ns[s] = now;
            }
        }
        if (phase == P_WARMUP && now >= phase_deadline) {
            phase = P_MEASURE;
            t0 = now;
            s_t0 = read_proc();
            getrusage(RUSAGE_SELF, &ru_t0);
            phase_deadline = now + (int64_t)(opt_duration * 1e9);
        }
        if (phase == P_MEASURE && now >= phase_deadline) {
            t1 = now;
            s_t1 = read_proc();
            getrusage(RUSAGE_SELF, &ru_t1);
            phase = P_DRAIN;
            phase_deadline = now + (int64_t)(opt_drain * 1e9);
        }
        if (phase == P_DRAIN) {
            int pending = 0;
            for (int s = 0; s < K; s++) pending |= conns[s].wlen > conns[s].woff;
            if ((all_acked() && !pending) || now >= phase_deadline) {
                if (!all_acked()) {
                    logmsg("drain timeout: messages still in flight");
                    drain_timed_out = 1;
                }
                t_drained = now;
                if (opt_linger <= 0) { phase = P_DONE; break; }
                s_end = read_proc();
                getrusage(RUSAGE_SELF, &ru_end);
                report();
                reported = 1;
                phase = P_LINGER;
                phase_deadline = now + (int64_t)(opt_linger * 1e9);
                struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &e) < 0) stdin_closed = 1;
            }
        }
        if (phase == P_LINGER && (stdin_closed || now >= phase_deadline)) {
            phase = P_DONE;
            break;
        }
        pump_senders(now);

        /* wait */
        int64_t wake = phase_deadline < hard_deadline ? phase_deadline : hard_deadline;
        int64_t due = next_rate_due();
        if (due < wake) wake = due;
        int nready = 0;
        for (int i = 0; i < opt_clients; i++)
            if (conns[i].on_ready_list) ready[nready++] = &conns[i];
        int timeout_ms;
        if (nready) timeout_ms = 0;
        else {
            int64_t d = wake - now_ns();
            timeout_ms = d <= 0 ? 0 : (int)((d + 999999) / 1000000);
            if (timeout_ms > 100) timeout_ms = 100;
        }
        int n = epoll_wait(ep, evs, 256, timeout_ms);
        if (n < 0 && errno != EINTR) { fail("epoll_wait: %s", strerror(errno)); break; }
        for (int i = 0; i < nready; i++) {
            ready[i]->on_ready_list = 0;
            if (ready[i]->state != C_CLOSED) handle_input(ready[i]);
            if (ready[i]->state != C_CLOSED && ready[i]->wlen > ready[i]->woff) flush(ready[i]);
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {   /* stdin, while lingering */
                char b[256];
                ssize_t got = read(0, b, sizeof b);
                if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR))
                    stdin_closed = 1;
                continue;
            }
            on_event(evs[i].data.ptr, evs[i].events);
        }
    }
    if (!t1 && t0) { t1 = now_ns(); s_t1 = read_proc(); getrusage(RUSAGE_SELF, &ru_t1); }
    phase = P_DONE;
    if (!reported) {
        s_end = read_proc();
        getrusage(RUSAGE_SELF, &ru_end);
        report();
    }
    for (int i = 0; i < opt_clients; i++) close_conn(&conns[i], "done");
    return fatal_msg[0] ? 1 : 0;
}
