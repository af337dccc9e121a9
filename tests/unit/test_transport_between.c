/*
 * test_transport_between: the hook of transport_on_between runs between two datagrams of one
 * UDP read batch (never after the last), and when it says it queued sends they leave at once,
 * before the next datagram of the batch is handled. That is what lets a REGISTER's 200 leave
 * right after its commit (main.c hooks store_poll there) instead of after up to 31 more
 * datagrams. A real listener on 127.0.0.1 and a client socket: the three datagrams are queued
 * before the loop runs, so one recvmmsg takes them together.
 */
#include "tap.h"
#include "transport.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

static struct transport *tp;
static int client_fd;
static int handled, betweens, answer_first, answered_before[4];
static struct sip_source first_src;

/* whether a datagram is waiting at the client, without taking it */
static int client_has_datagram(void)
{
    char b[64];
    return recv(client_fd, b, sizeof b, MSG_DONTWAIT | MSG_PEEK) > 0;
}

static void on_msg(void *arg, const char *buf, size_t len, const struct sip_source *src)
{
    (void)arg;
    (void)buf;
    (void)len;
    if (++handled == 1)
        first_src = *src;
    if (handled < 4)
        answered_before[handled] = client_has_datagram();
}

/* after the first datagram: nothing to do; after the second: an answer queued */
static int between(void *arg)
{
    (void)arg;
    if (++betweens != 2)
        return 0;
    transport_send(tp, &first_src, "answer", 6);
    return answer_first;
}

static int free_udp_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        return -1;
    close(fd);
    return ntohs(a.sin_port);
}

/* Three datagrams to the listener, the loop run until it has handled them. */
static void batch_of_three(struct ev_loop *loop, const struct sockaddr_in *to)
{
    handled = betweens = 0;
    memset(answered_before, 0, sizeof answered_before);
    static const char *const msgs[] = {"first datagram", "second datagram", "third datagram"};
    for (int i = 0; i < 3; i++)
        sendto(client_fd, msgs[i], strlen(msgs[i]), 0, (const struct sockaddr *)to, sizeof *to);
    for (int i = 0; i < 100 && handled < 3; i++)
        ev_run(loop, EVRUN_ONCE);
}

int main(void)
{
    struct config cfg;
    config_defaults(&cfg);
    int port = free_udp_port();
    ok(port > 0, "a free UDP port on 127.0.0.1 (%d)", port);
    for (size_t i = 0; i < cfg.n_listens; i++) /* the defaults' */
        free(cfg.listens[i].host);
    free(cfg.listens);
    cfg.listens = xcalloc(1, sizeof *cfg.listens);
    cfg.listens[0] = (struct config_listen){CONFIG_TRANSPORT_UDP, xstrdup("127.0.0.1"), port};
    cfg.n_listens = 1;
    struct ev_loop *loop = ev_default_loop(0);
    char err[256];
    ok(transport_open(loop, &cfg, on_msg, NULL, &tp, err, sizeof err) == 0,
       "a UDP listener on it (%s)", err);
    transport_on_between(tp, between, NULL);
    client_fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    answer_first = 1;
    batch_of_three(loop, &to);
    is_int(handled, 3, "the three datagrams were handled");
    is_int(betweens, 2, "the hook ran twice: between the first and second, the second and third");
    is_int(answered_before[2], 0, "nothing had been sent when the second was handled");
    is_int(answered_before[3], 1,
           "the answer the hook queued (and said so) reached the client before the third "
           "datagram was handled");
    char b[64];
    ssize_t n = recv(client_fd, b, sizeof b, MSG_DONTWAIT);
    ok(n == 6 && memcmp(b, "answer", 6) == 0, "it is the answer");

    /* the same, the hook not saying it queued anything: the answer waits for the batch's end */
    answer_first = 0;
    batch_of_three(loop, &to);
    is_int(betweens, 2, "the hook ran twice again");
    is_int(answered_before[3], 0, "unflushed, the answer had not left when the third was handled");
    for (int i = 0; i < 100 && !client_has_datagram(); i++)
        ev_run(loop, EVRUN_NOWAIT);
    ok(client_has_datagram(), "it left with the batch");

    close(client_fd);
    transport_close(tp);
    config_free(&cfg);
    done_testing();
}
