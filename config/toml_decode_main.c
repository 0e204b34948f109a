/* toml-decode: the toml-test "decoder" protocol (see ../shared/toml-test/README.md).
 *
 * Reads one TOML document from stdin. Valid: prints it as tagged JSON on stdout, exit 0.
 * Invalid: prints "<stdin>:LINE:COL: message" on stderr, exit 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mk_toml.h"

static void put_json_string(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20 || c == 0x7F)
                fprintf(f, "\\u%04x", c);
            else
                fputc(c, f); /* the parser guarantees valid UTF-8 */
        }
    }
    fputc('"', f);
}

static void put_time(FILE *f, const mk_toml_datetime *dt)
{
    fprintf(f, "%02d:%02d:%02d", dt->hour, dt->minute, dt->second);
    if (dt->frac_digits > 0) {
        int nd = dt->frac_digits > 9 ? 9 : dt->frac_digits;
        int ns = dt->nanosecond;
        for (int i = nd; i < 9; i++)
            ns /= 10;
        fprintf(f, ".%0*d", nd, ns);
    }
}

/* Shortest %.Ng (N = 15..17) that reads back as the same double. */
static void shortest_double(char *buf, size_t n, double d)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

static void put_scalar(FILE *f, const char *type, const char *text)
{
    fprintf(f, "{\"type\":\"%s\",\"value\":\"%s\"}", type, text);
}

static void put_value(FILE *f, const mk_toml_value *v)
{
    char buf[64];
    const mk_toml_datetime *dt = mk_toml_dt(v);
    switch (mk_toml_type_of(v)) {
    case MK_TOML_TABLE:
        fputc('{', f);
        for (size_t i = 0; i < mk_toml_table_len(v); i++) {
            if (i)
                fputc(',', f);
            put_json_string(f, mk_toml_table_key(v, i), mk_toml_table_key_len(v, i));
            fputc(':', f);
            put_value(f, mk_toml_table_at(v, i));
        }
        fputc('}', f);
        break;
    case MK_TOML_ARRAY:
        fputc('[', f);
        for (size_t i = 0; i < mk_toml_array_len(v); i++) {
            if (i)
                fputc(',', f);
            put_value(f, mk_toml_array_at(v, i));
        }
        fputc(']', f);
        break;
    case MK_TOML_STRING: {
        size_t n;
        const char *s = mk_toml_string(v, &n);
        fputs("{\"type\":\"string\",\"value\":", f);
        put_json_string(f, s, n);
        fputc('}', f);
        break;
    }
    case MK_TOML_INTEGER:
        snprintf(buf, sizeof buf, "%lld", (long long)mk_toml_int(v));
        put_scalar(f, "integer", buf);
        break;
    case MK_TOML_FLOAT: {
        double d = mk_toml_float(v);
        if (isnan(d))
            snprintf(buf, sizeof buf, "nan");
        else if (isinf(d))
            snprintf(buf, sizeof buf, "%s", d < 0 ? "-inf" : "inf");
        else
            shortest_double(buf, sizeof buf, d);
        put_scalar(f, "float", buf);
        break;
    }
    case MK_TOML_BOOL: put_scalar(f, "bool", mk_toml_bool(v) ? "true" : "false"); break;
    case MK_TOML_DATETIME:
    case MK_TOML_DATETIME_LOCAL:
        fprintf(f, "{\"type\":\"%s\",\"value\":\"%04d-%02d-%02dT",
                mk_toml_type_of(v) == MK_TOML_DATETIME ? "datetime" : "datetime-local", dt->year,
                dt->month, dt->day);
        put_time(f, dt);
        if (mk_toml_type_of(v) == MK_TOML_DATETIME) {
            if (dt->offset_z) {
                fputc('Z', f);
            } else {
                int m = dt->offset_minutes < 0 ? -dt->offset_minutes : dt->offset_minutes;
                fprintf(f, "%c%02d:%02d", dt->offset_minutes < 0 ? '-' : '+', m / 60, m % 60);
            }
        }
        fputs("\"}", f);
        break;
    case MK_TOML_DATE_LOCAL:
        fprintf(f, "{\"type\":\"date-local\",\"value\":\"%04d-%02d-%02d\"}", dt->year, dt->month,
                dt->day);
        break;
    case MK_TOML_TIME_LOCAL:
        fputs("{\"type\":\"time-local\",\"value\":\"", f);
        put_time(f, dt);
        fputs("\"}", f);
        break;
    default: fputs("null", f); break;
    }
}

int main(void)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fputs("toml-decode: out of memory\n", stderr);
        return 1;
    }
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fputs("toml-decode: out of memory\n", stderr);
                return 1;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(stdin)) {
        free(buf);
        fputs("toml-decode: error reading stdin\n", stderr);
        return 1;
    }
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_toml_doc *doc = NULL;
    mk_status st = mk_toml_parse(&ctx, "<stdin>", buf, n, &doc);
    free(buf);
    if (st != MK_OK) {
        fprintf(stderr, "%s\n", mk_ctx_errmsg(&ctx));
        return 1;
    }
    put_value(stdout, mk_toml_root(doc));
    fputc('\n', stdout);
    mk_toml_free(doc);
    if (fflush(stdout) != 0) {
        fputs("toml-decode: error writing stdout\n", stderr);
        return 1;
    }
    return 0;
}
