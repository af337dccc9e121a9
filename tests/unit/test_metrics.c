/* metrics: credential problems are kept per provider, set and (Web Push) origin, and rows
 * with an origin are bounded apart, so users registering endpoints of their own cannot crowd
 * out the APNs and FCM rows (issue 13 attack b03). */
#include <stdio.h>
#include <string.h>

#include "metrics.c"
#include "tap.h"

static const struct metrics_credential_row *find(const char *provider, const char *origin)
{
    size_t n;
    const struct metrics_credential_row *r = metrics_credential_problems(&n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(r[i].provider, provider) == 0 && strcmp(r[i].origin, origin) == 0)
            return &r[i];
    return NULL;
}

int main(void)
{
    size_t n;
    metrics_credential_problem("fcm", "[push]", NULL, 0, 403, "PERMISSION_DENIED", 1000);
    metrics_credential_problem("webpush", "[push]", "https://evil.example", 0, 403, "x", 1001);
    metrics_credential_problem("webpush", "[push]", "https://push.example", 0, 403, "BadJwtToken",
                               1002);
    metrics_credential_problems(&n);
    is_int((int)n, 3, "one row per provider, set and origin");
    metrics_credential_problem("webpush", "[push]", "https://other.example", 1, 201, "", 1003);
    ok(!find("webpush", "https://evil.example")->resolved_ms &&
           !find("webpush", "https://push.example")->resolved_ms,
       "a delivery to another origin resolves neither");
    metrics_credential_problem("webpush", "[push]", "https://evil.example", 1, 201, "", 1004);
    ok(find("webpush", "https://evil.example")->resolved_ms == 1004 &&
           !find("webpush", "https://push.example")->resolved_ms,
       "a delivery to the origin resolves its row only");
    for (int i = 0; i < 100; i++) {
        char o[64];
        snprintf(o, sizeof o, "https://e%d.example", i);
        metrics_credential_problem("webpush", "[push]", o, 0, 403, "x", 2000 + i);
    }
    metrics_credential_problems(&n);
    is_int((int)n, 17, "100 origins: at most 16 rows with an origin, beside the FCM row");
    ok(find("fcm", "") && !find("fcm", "")->resolved_ms, "the FCM row is still there");
    ok(find("webpush", "https://e99.example") && !find("webpush", "https://e83.example"),
       "the newest origins are kept, the oldest went");
    metrics_credential_problem("fcm", "acme/default", "", 0, 401, "UNAUTHENTICATED", 3000);
    ok(find("fcm", "") && metrics_credential_problems(&n) && n == 18,
       "an FCM problem of another set still finds room");
    return done_testing();
}
