/* transport_addr_str: an IPv4 address is written as inet_ntop writes it (the hand-written
 * formatting done for every datagram), at every digit count of every octet, with the port in
 * host order; IPv6 as inet_ntop; a buffer too short for any IPv4 address is not overrun. */
#include "tap.h"
#include "transport.h"

#include <stdlib.h>

static int same_as_inet_ntop(uint32_t addr, uint16_t port)
{
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(port)};
    s4.sin_addr.s_addr = htonl(addr);
    char got[INET6_ADDRSTRLEN], want[INET_ADDRSTRLEN];
    int p = -1;
    memset(got, 'x', sizeof got);
    transport_addr_str((struct sockaddr *)&s4, got, sizeof got, &p);
    inet_ntop(AF_INET, &s4.sin_addr, want, sizeof want);
    if (strcmp(got, want) != 0 || p != port) {
        printf("# %08x:%u: got '%s':%d, expected '%s'\n", addr, port, got, p, want);
        return 0;
    }
    return 1;
}

int main(void)
{
    static const uint32_t fixed[] = {0x00000000, 0xffffffff, 0x7f000001, 0x0a000001, 0xc0a86409,
                                     0x09630a64, 0x01020304, 0x64646464, 0x0a0a0a0a, 0xc0000207};
    int all = 1;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        all &= same_as_inet_ntop(fixed[i], (uint16_t)(5060 + i));
    ok(all, "fixed IPv4 addresses (0, 255, 1-, 2- and 3-digit octets) as inet_ntop writes them");

    all = 1;
    for (unsigned v = 0; v < 256; v++) /* every octet value at every position */
        all &= same_as_inet_ntop(v << 24 | v << 16 | (255 - v) << 8 | v, (uint16_t)v);
    ok(all, "every octet value in every position");

    all = 1;
    srand(15);
    for (int i = 0; i < 100000; i++)
        all &= same_as_inet_ntop((uint32_t)rand() << 16 ^ (uint32_t)rand(), (uint16_t)rand());
    ok(all, "100000 random IPv4 addresses and ports");

    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(5071)};
    inet_pton(AF_INET6, "2001:db8::9", &s6.sin6_addr);
    char ip[INET6_ADDRSTRLEN];
    int port = 0;
    transport_addr_str((struct sockaddr *)&s6, ip, sizeof ip, &port);
    is_str(ip, "2001:db8::9", "an IPv6 address");
    is_int(port, 5071, "with its port");

    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(1)};
    s4.sin_addr.s_addr = htonl(0xc0a86409);
    char small[10 + 1];
    memset(small, 'x', sizeof small);
    transport_addr_str((struct sockaddr *)&s4, small, sizeof small - 1, &port);
    ok(small[10] == 'x', "a short buffer is not written past its end");
    done_testing();
}
