/*
 * transport_tls: the OpenSSL server context, and the self-signed certificate made on
 * first run when the config names none.
 *
 * The generated pair lives in data_dir/tls/{cert,key}.pem (modes 0644 and 0600, whatever the
 * umask) and is reused on later runs, so clients that pinned it keep working. It is an ECDSA P-256
 * certificate for CN=sipwake with subjectAltName localhost, 127.0.0.1 and ::1, valid ten years:
 * good for a lab and for `make run`, and meant to be replaced by a real one in production.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "transport_int.h"

static void ssl_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char msg[256] = "unknown error";
    if (e)
        ERR_error_string_n(e, msg, sizeof msg);
    snprintf(err, errlen, "%s: %s", what, msg);
    ERR_clear_error();
}

static int mkdir_p(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

/* path opened for writing (emptied) with exactly mode, whatever the umask (000 would make a
 * certificate anyone may replace). umask() itself is not used: it is the whole process's, and
 * other threads create files. */
static FILE *create_file(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return NULL;
    FILE *f = fchmod(fd, mode) == 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return f;
}

static int add_ext(X509 *cert, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ex)
        return -1;
    int ok = X509_add_ext(cert, ex, -1);
    X509_EXTENSION_free(ex);
    return ok ? 0 : -1;
}

static int generate_self_signed(const char *cert_path, const char *key_path, char *err,
                                size_t errlen)
{
    int rc = -1;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    FILE *f = NULL;
    if (!key || !cert) {
        ssl_error(err, errlen, "generating TLS key");
        goto out;
    }
    unsigned char serial[16];
    util_random(serial, sizeof serial);
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
    BN_free(bn);
    X509_set_version(cert, 2);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 10L * 365 * 24 * 3600);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"sipwake", -1, -1,
                               0);
    X509_set_issuer_name(cert, name);
    if (add_ext(cert, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1") < 0 ||
        add_ext(cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        X509_sign(cert, key, EVP_sha256()) == 0) {
        ssl_error(err, errlen, "signing the self-signed certificate");
        goto out;
    }
    f = create_file(key_path, 0600);
    if (!f || !PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)) {
        snprintf(err, errlen, "cannot write %s: %s", key_path, strerror(errno));
        goto out;
    }
    fclose(f);
    f = create_file(cert_path, 0644);
    if (!f || !PEM_write_X509(f, cert)) {
        snprintf(err, errlen, "cannot write %s: %s", cert_path, strerror(errno));
        goto out;
    }
    log_info("tls: generated a self-signed certificate in %s (set [tls] certificate for a real "
             "one)",
             cert_path);
    rc = 0;
out:
    if (f)
        fclose(f);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

SSL_CTX *transport_tls_context(const struct config *cfg, char *err, size_t errlen)
{
    char cert_path[1024], key_path[1024];
    if (*cfg->tls_certificate) {
        snprintf(cert_path, sizeof cert_path, "%s", cfg->tls_certificate);
        snprintf(key_path, sizeof key_path, "%s", cfg->tls_private_key);
    } else {
        char dir[900];
        snprintf(dir, sizeof dir, "%s/tls", cfg->data_dir);
        snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
        snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
        struct stat st;
        if (stat(cert_path, &st) < 0 || stat(key_path, &st) < 0) {
            if (mkdir_p(dir) < 0) {
                snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
                return NULL;
            }
            if (generate_self_signed(cert_path, key_path, err, errlen) < 0)
                return NULL;
        }
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_error(err, errlen, "creating the TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        char what[1100];
        snprintf(what, sizeof what, "[tls] certificate %s", cert_path);
        ssl_error(err, errlen, what);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        char what[1100];
        snprintf(what, sizeof what, "[tls] private_key %s", key_path);
        ssl_error(err, errlen, what);
        goto fail;
    }
    if (cfg->tls_verify_client != CONFIG_TLS_VERIFY_NONE) {
        if (SSL_CTX_load_verify_locations(ctx, cfg->tls_ca, NULL) != 1) {
            char what[1100];
            snprintf(what, sizeof what, "[tls] ca %s", cfg->tls_ca);
            ssl_error(err, errlen, what);
            goto fail;
        }
        int mode = SSL_VERIFY_PEER;
        if (cfg->tls_verify_client == CONFIG_TLS_VERIFY_REQUIRED)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
        SSL_CTX_set_client_CA_list(ctx, SSL_load_client_CA_file(cfg->tls_ca));
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int transport_tls_client(struct transport *t)
{
    if (t->tls_client_ctx)
        return 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return -1;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = *t->cfg->tls_ca ? SSL_CTX_load_verify_locations(ctx, t->cfg->tls_ca, NULL)
                             : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        char err[300];
        ssl_error(err, sizeof err, "tls: loading the CAs to check servers with");
        log_error("%s", err);
        SSL_CTX_free(ctx);
        return -1;
    }
    t->tls_client_ctx = ctx;
    return 0;
}
