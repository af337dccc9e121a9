/* The table of UDP addresses heard lately: an address counts within its window and not
 * after it, a new packet renews it, stale entries are dropped as others arrive, the cap
 * drops the oldest first, and a window of 0 remembers nothing. */
#include "heard.c"
#include "tap.h"

int main(void)
{
    struct heard *h = heard_new(40, 3);
    heard_note(h, "192.0.2.1", 5060, 100.0);
    ok(heard_recently(h, "192.0.2.1", 5060, 139.0), "heard 39 s ago: within a 40 s window");
    ok(!heard_recently(h, "192.0.2.1", 5061, 139.0), "another port of the same host was not heard");
    ok(!heard_recently(h, "192.0.2.10", 5060, 139.0), "nor another host");
    ok(!heard_recently(h, "192.0.2.1", 5060, 141.0), "41 s ago: asleep");
    heard_note(h, "192.0.2.1", 5060, 141.0);
    ok(heard_recently(h, "192.0.2.1", 5060, 170.0), "a keep-alive renews it");
    heard_note(h, "2001:db8::1", 5060, 150.0);
    heard_note(h, "192.0.2.2", 5060, 160.0);
    ok(heard_count(h) == 3, "three addresses held");
    heard_note(h, "192.0.2.3", 5060, 165.0);
    ok(heard_count(h) == 3, "the cap holds");
    ok(!heard_recently(h, "192.0.2.1", 5060, 165.0), "the oldest went first");
    ok(heard_recently(h, "2001:db8::1", 5060, 165.0) && heard_recently(h, "192.0.2.3", 5060, 165.0),
       "the others stay");
    heard_note(h, "192.0.2.4", 5060, 300.0);
    ok(heard_count(h) == 1, "stale entries are dropped as new ones arrive");
    heard_free(h);

    h = heard_new(0, 10);
    heard_note(h, "192.0.2.1", 5060, 100.0);
    ok(!heard_recently(h, "192.0.2.1", 5060, 100.0) && heard_count(h) == 0,
       "a window of 0 remembers nothing: push only");
    heard_free(h);
    done_testing();
}
