/*
 * linkd: the testbed's internet. A userspace IPv4 router that joins network namespaces through TUN devices and
 * delays every packet by the one-way latency between the regions of the two endpoints it connects.
 *
 * Why userspace: the kernel the testbed runs on has no netem qdisc, so latency cannot be added with tc. Every
 * "public" interface of the testbed is a TUN device whose only other side is this process, which makes linkd the one
 * place where packets cross between namespaces, and so the one place where delay is applied (exactly once per
 * packet: RTT = 2 x one-way delay).
 *
 *   linkd [--tag TAG] [--max-queue-bytes N] --delay A:B:MICROS... NETNS:IFNAME:REGION:ADDRESS[/LEN]...
 *
 * Each endpoint names a namespace (a file under /var/run/netns), the TUN device to create there, its region and the
 * address (or prefix) it owns. --delay gives the one-way delay between two regions, in microseconds, both ways; A:A
 * is the delay inside region A. Every pair of regions that endpoints use must have one. --tag is ignored; it is there
 * so that a process listing can tell which testbed a linkd belongs to.
 *
 * linkd prints "ready" on stdout once every TUN device exists, writes its counters to stderr on SIGUSR1 and when it
 * exits, and exits on SIGTERM or SIGINT (the TUN devices vanish with it) or once every namespace it serves is gone.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_ENDPOINTS 1024
#define MAX_REGIONS 64
#define REGION_NAME_MAX 64
#define PACKET_MAX 65536
/* Packets read from one TUN before the others get a turn, so one busy sender cannot starve the rest. */
#define READ_BURST 256
#define DEFAULT_MAX_QUEUE_BYTES (64ull << 20)

struct packet {
    struct packet *next;
    uint64_t release_ns;
    int out; /* index of the destination endpoint */
    uint32_t len;
    unsigned char data[];
};

/*
 * One FIFO per (source region, destination region): every packet in it waits the same delay, so arrival order is
 * release order. That keeps packets in order per pair without a heap, and finding the next release is a scan of the
 * FIFO heads.
 */
struct fifo {
    struct packet *head, *tail;
};

struct endpoint {
    char netns[NAME_MAX + 1];
    char ifname[IFNAMSIZ];
    int region;
    uint32_t network; /* host byte order */
    uint32_t mask;
    int prefix_len;
    int fd;
    bool alive;
};

struct counters {
    uint64_t received, forwarded, forwarded_bytes;
    uint64_t dropped_not_ipv4, dropped_spoofed, dropped_unknown, dropped_queue_full, dropped_write_failed;
};

static struct endpoint endpoints[MAX_ENDPOINTS];
static int endpoint_count;
static char region_names[MAX_REGIONS][REGION_NAME_MAX];
static int region_count;
static int64_t delay_us[MAX_REGIONS][MAX_REGIONS]; /* -1: not given */
static struct fifo queues[MAX_REGIONS][MAX_REGIONS];
static uint64_t queued_bytes, max_queue_bytes = DEFAULT_MAX_QUEUE_BYTES;
static struct counters stats;
static unsigned char read_buffer[PACKET_MAX];

static void die(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("linkd: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- configuration ---------------------------------------------------------------------------------------------- */

static int region_index(const char *name) {
    for (int i = 0; i < region_count; i++)
        if (strcmp(region_names[i], name) == 0) return i;
    if (region_count == MAX_REGIONS) die("more than %d regions", MAX_REGIONS);
    if (strlen(name) == 0 || strlen(name) >= REGION_NAME_MAX) die("bad region name '%s'", name);
    strcpy(region_names[region_count], name);
    for (int i = 0; i <= region_count; i++) delay_us[i][region_count] = delay_us[region_count][i] = -1;
    return region_count++;
}

/* Splits `text` at ':' into exactly `count` fields, in place; false when the count differs. */
static bool split_fields(char *text, char **fields, int count) {
    for (int i = 0; i < count; i++) {
        fields[i] = text;
        char *colon = strchr(text, ':');
        if (i == count - 1) return colon == NULL;
        if (colon == NULL) return false;
        *colon = '\0';
        text = colon + 1;
    }
    return false;
}

/* Both parsers split a copy: writing into argv would change what `ps` and /proc/PID/cmdline show. */
static void parse_delay(const char *arg) {
    char *copy = strdup(arg), *f[3], *end;
    if (!split_fields(copy, f, 3)) die("--delay '%s': expected REGION_A:REGION_B:MICROSECONDS", arg);
    long long micros = strtoll(f[2], &end, 10);
    if (*f[2] == '\0' || *end != '\0' || micros < 0) die("--delay '%s': bad microseconds", arg);
    int a = region_index(f[0]), b = region_index(f[1]);
    delay_us[a][b] = delay_us[b][a] = micros;
    free(copy);
}

static void parse_endpoint(const char *arg) {
    char *copy = strdup(arg), *f[4];
    if (endpoint_count == MAX_ENDPOINTS) die("more than %d endpoints", MAX_ENDPOINTS);
    if (!split_fields(copy, f, 4)) die("endpoint '%s': expected NETNS:IFNAME:REGION:ADDRESS[/LEN]", arg);
    struct endpoint *e = &endpoints[endpoint_count];
    if (strlen(f[0]) == 0 || strlen(f[0]) > NAME_MAX || strchr(f[0], '/')) die("endpoint '%s': bad namespace", arg);
    if (strlen(f[1]) == 0 || strlen(f[1]) >= IFNAMSIZ) die("endpoint '%s': bad interface name", arg);
    strcpy(e->netns, f[0]);
    strcpy(e->ifname, f[1]);
    e->region = region_index(f[2]);
    e->prefix_len = 32;
    char *slash = strchr(f[3], '/');
    if (slash != NULL) {
        char *end;
        e->prefix_len = (int)strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || e->prefix_len < 0 || e->prefix_len > 32)
            die("endpoint '%s': bad prefix length", arg);
        *slash = '\0';
    }
    struct in_addr address;
    if (inet_pton(AF_INET, f[3], &address) != 1) die("endpoint '%s': bad IPv4 address", arg);
    e->mask = e->prefix_len == 0 ? 0 : ~0u << (32 - e->prefix_len);
    e->network = ntohl(address.s_addr) & e->mask;
    e->fd = -1;
    endpoint_count++;
    free(copy);
}

static void check_delays(void) {
    for (int i = 0; i < endpoint_count; i++)
        for (int j = 0; j < endpoint_count; j++) {
            int a = endpoints[i].region, b = endpoints[j].region;
            if (delay_us[a][b] < 0) die("no --delay for regions %s and %s", region_names[a], region_names[b]);
        }
}

static void parse_arguments(int argc, char **argv) {
    static const struct option options[] = {
        {"delay", required_argument, NULL, 'd'},
        {"max-queue-bytes", required_argument, NULL, 'q'},
        {"tag", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    int option;
    char *end;
    while ((option = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (option) {
        case 'd': parse_delay(optarg); break;
        case 'q':
            max_queue_bytes = strtoull(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || max_queue_bytes == 0) die("bad --max-queue-bytes '%s'", optarg);
            break;
        case 't': break;
        default: die("usage: linkd [--tag TAG] [--max-queue-bytes N] --delay A:B:MICROS... NETNS:IFNAME:REGION:ADDRESS...");
        }
    }
    for (int i = optind; i < argc; i++) parse_endpoint(argv[i]);
    if (endpoint_count == 0) die("no endpoints given");
    check_delays();
}

/* ---- TUN devices ------------------------------------------------------------------------------------------------ */

/*
 * Creates the TUN device inside the endpoint's namespace: a TUN belongs to the namespace of the process that creates
 * it, so linkd enters the namespace for the open and ioctl, then returns home. The fd keeps working from here, and
 * the device is not persistent, so it disappears when linkd exits.
 */
static void open_tun(struct endpoint *e, int home_netns) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "/var/run/netns/%.*s", NAME_MAX, e->netns);
    int netns = open(path, O_RDONLY | O_CLOEXEC);
    if (netns < 0) die("cannot open namespace %s (%s): %s", e->netns, path, strerror(errno));
    if (setns(netns, CLONE_NEWNET) < 0) die("cannot enter namespace %s: %s", e->netns, strerror(errno));
    close(netns);
    e->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (e->fd < 0) die("cannot open /dev/net/tun: %s", strerror(errno));
    struct ifreq request;
    memset(&request, 0, sizeof request);
    request.ifr_flags = IFF_TUN | IFF_NO_PI;
    strncpy(request.ifr_name, e->ifname, IFNAMSIZ - 1);
    if (ioctl(e->fd, TUNSETIFF, &request) < 0)
        die("cannot create TUN %s in namespace %s: %s", e->ifname, e->netns, strerror(errno));
    if (setns(home_netns, CLONE_NEWNET) < 0) die("cannot return to linkd's own namespace: %s", strerror(errno));
    e->alive = true;
}

/* An endpoint whose namespace was deleted under linkd: stop reading it; once none is left there is nothing to do. */
static void retire(struct endpoint *e, int epoll_fd, const char *why) {
    fprintf(stderr, "linkd: %s in namespace %s: %s; no longer serving it\n", e->ifname, e->netns, why);
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, e->fd, NULL);
    close(e->fd);
    e->fd = -1;
    e->alive = false;
}

static bool any_alive(void) {
    for (int i = 0; i < endpoint_count; i++)
        if (endpoints[i].alive) return true;
    return false;
}

/* ---- forwarding ------------------------------------------------------------------------------------------------- */

/* The endpoint with the longest prefix holding `address` (host byte order), or -1. */
static int route(uint32_t address) {
    int best = -1;
    for (int i = 0; i < endpoint_count; i++) {
        const struct endpoint *e = &endpoints[i];
        if ((address & e->mask) == e->network && (best < 0 || e->prefix_len > endpoints[best].prefix_len)) best = i;
    }
    return best;
}

static uint32_t ipv4_field(const unsigned char *packet, int offset) {
    uint32_t value;
    memcpy(&value, packet + offset, sizeof value);
    return ntohl(value);
}

/*
 * Queues one packet read from endpoint `in`. Sources outside the endpoint's own prefix are dropped the way an ISP
 * filters spoofed traffic (BCP 38): a NAT that leaks a private source address shows up as a drop, not as a packet
 * that finds no way back.
 */
static void accept_packet(int in, const unsigned char *data, uint32_t len) {
    stats.received++;
    if (len < 20 || data[0] >> 4 != 4) {
        stats.dropped_not_ipv4++;
        return;
    }
    const struct endpoint *source = &endpoints[in];
    if ((ipv4_field(data, 12) & source->mask) != source->network) {
        stats.dropped_spoofed++;
        return;
    }
    int out = route(ipv4_field(data, 16));
    if (out < 0 || out == in || !endpoints[out].alive) {
        stats.dropped_unknown++;
        return;
    }
    if (queued_bytes + len > max_queue_bytes) {
        stats.dropped_queue_full++;
        return;
    }
    struct packet *p = malloc(sizeof *p + len);
    if (p == NULL) {
        stats.dropped_queue_full++;
        return;
    }
    int a = source->region, b = endpoints[out].region;
    p->next = NULL;
    p->release_ns = now_ns() + (uint64_t)delay_us[a][b] * 1000u;
    p->out = out;
    p->len = len;
    memcpy(p->data, data, len);
    struct fifo *q = &queues[a][b];
    if (q->tail != NULL) q->tail->next = p; else q->head = p;
    q->tail = p;
    queued_bytes += len;
}

/* Reads up to READ_BURST packets from one TUN; epoll is level-triggered, so anything left is reported again. */
static void read_endpoint(int in, int epoll_fd) {
    struct endpoint *e = &endpoints[in];
    for (int n = 0; n < READ_BURST; n++) {
        ssize_t len = read(e->fd, read_buffer, sizeof read_buffer);
        if (len < 0 && errno == EINTR) continue;
        if (len < 0 && errno == EAGAIN) return;
        if (len <= 0) {
            retire(e, epoll_fd, len < 0 ? strerror(errno) : "end of file");
            return;
        }
        accept_packet(in, read_buffer, (uint32_t)len);
    }
}

static void deliver(struct packet *p) {
    struct endpoint *e = &endpoints[p->out];
    if (e->alive && write(e->fd, p->data, p->len) == (ssize_t)p->len) {
        stats.forwarded++;
        stats.forwarded_bytes += p->len;
    } else {
        stats.dropped_write_failed++;
    }
}

/* Writes every packet whose time has come; returns the earliest release still pending, or 0 when none is. */
static uint64_t release_due(void) {
    uint64_t now = now_ns(), next = 0;
    for (int a = 0; a < region_count; a++)
        for (int b = 0; b < region_count; b++) {
            struct fifo *q = &queues[a][b];
            while (q->head != NULL && q->head->release_ns <= now) {
                struct packet *p = q->head;
                q->head = p->next;
                if (q->head == NULL) q->tail = NULL;
                queued_bytes -= p->len;
                deliver(p);
                free(p);
            }
            if (q->head != NULL && (next == 0 || q->head->release_ns < next)) next = q->head->release_ns;
        }
    return next;
}

static void arm_timer(int timer_fd, uint64_t release_ns) {
    struct itimerspec when;
    memset(&when, 0, sizeof when); /* all zero disarms */
    if (release_ns != 0) {
        when.it_value.tv_sec = (time_t)(release_ns / 1000000000ull);
        when.it_value.tv_nsec = (long)(release_ns % 1000000000ull);
    }
    if (timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &when, NULL) < 0) die("timerfd_settime: %s", strerror(errno));
}

static void print_counters(void) {
    fprintf(stderr,
            "linkd: received=%llu forwarded=%llu forwarded_bytes=%llu queued_bytes=%llu dropped_not_ipv4=%llu "
            "dropped_spoofed=%llu dropped_unknown=%llu dropped_queue_full=%llu dropped_write_failed=%llu\n",
            (unsigned long long)stats.received, (unsigned long long)stats.forwarded,
            (unsigned long long)stats.forwarded_bytes, (unsigned long long)queued_bytes,
            (unsigned long long)stats.dropped_not_ipv4, (unsigned long long)stats.dropped_spoofed,
            (unsigned long long)stats.dropped_unknown, (unsigned long long)stats.dropped_queue_full,
            (unsigned long long)stats.dropped_write_failed);
    fflush(stderr);
}

/* ---- main loop -------------------------------------------------------------------------------------------------- */

/* epoll data for the two non-TUN fds; TUN fds carry their endpoint index. */
#define EVENT_SIGNAL (-1)
#define EVENT_TIMER (-2)

static void watch(int epoll_fd, int fd, int id) {
    struct epoll_event event = {.events = EPOLLIN, .data.u64 = (uint64_t)(int64_t)id};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) < 0) die("epoll_ctl: %s", strerror(errno));
}

/* Returns false when linkd should exit. */
static bool handle_signal(int signal_fd) {
    struct signalfd_siginfo info;
    while (read(signal_fd, &info, sizeof info) == (ssize_t)sizeof info) {
        if (info.ssi_signo == SIGUSR1) print_counters();
        else return false;
    }
    return true;
}

int main(int argc, char **argv) {
    parse_arguments(argc, argv);
    /* The default timer slack (50 us) would add itself to every release; linkd wants its timer on time. */
    prctl(PR_SET_TIMERSLACK, 1UL);

    sigset_t handled;
    sigemptyset(&handled);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGINT);
    sigaddset(&handled, SIGHUP);
    sigaddset(&handled, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &handled, NULL) < 0) die("sigprocmask: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    int signal_fd = signalfd(-1, &handled, SFD_NONBLOCK | SFD_CLOEXEC);
    int timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    int home_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (signal_fd < 0 || timer_fd < 0 || epoll_fd < 0 || home_netns < 0) die("setup failed: %s", strerror(errno));
    watch(epoll_fd, signal_fd, EVENT_SIGNAL);
    watch(epoll_fd, timer_fd, EVENT_TIMER);
    for (int i = 0; i < endpoint_count; i++) {
        open_tun(&endpoints[i], home_netns);
        watch(epoll_fd, endpoints[i].fd, i);
    }
    close(home_netns);
    printf("ready\n");
    fflush(stdout);

    struct epoll_event events[64];
    for (;;) {
        int n = epoll_wait(epoll_fd, events, 64, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            int id = (int)(int64_t)events[i].data.u64;
            if (id == EVENT_SIGNAL) {
                if (!handle_signal(signal_fd)) goto done;
            } else if (id == EVENT_TIMER) {
                uint64_t expirations;
                while (read(timer_fd, &expirations, sizeof expirations) > 0) {}
            } else if (endpoints[id].alive) {
                read_endpoint(id, epoll_fd);
            }
        }
        if (!any_alive()) break;
        arm_timer(timer_fd, release_due());
    }
done:
    print_counters();
    return 0;
}
