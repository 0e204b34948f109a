/* TOML parser: accessor API, positions, error messages, limits, integers, floats, datetimes.
 *
 * Expected values are derived by hand from the TOML 1.0 spec (positions counted by hand on the
 * literal documents below; integers from their decimal definitions; floats compared with the C
 * compiler's own literals). Every document is copied into an exact-size heap buffer without a
 * terminating NUL so AddressSanitizer catches any read past the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/mk_status.h"
#include "config/mk_toml.h"

/* Parse `len` bytes of src from an exact-size copy. */
static mk_status parse_n(mk_ctx *ctx, const char *src, size_t len, mk_toml_doc **doc)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, src, len);
    mk_status st = mk_toml_parse(ctx, "t.toml", copy, len, doc);
    free(copy);
    return st;
}

static mk_toml_doc *parse_ok(const char *src)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_toml_doc *doc = NULL;
    mk_status st = parse_n(&ctx, src, strlen(src), &doc);
    if (st != MK_OK)
        fail_msg("unexpected parse error: %s", mk_ctx_errmsg(&ctx));
    assert_non_null(doc);
    return doc;
}

/* The document must be rejected with exactly `msg`. */
static void expect_error(const char *src, size_t len, const char *msg)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_toml_doc *doc = (mk_toml_doc *)1;
    mk_status st = parse_n(&ctx, src, len, &doc);
    assert_int_equal(st, MK_ERR_CONFIG);
    assert_null(doc);
    assert_string_equal(mk_ctx_errmsg(&ctx), msg);
}
#define EXPECT_ERROR(src, msg) expect_error((src), sizeof(src) - 1, (msg))

static const mk_toml_value *get(const mk_toml_value *t, const char *k)
{
    const mk_toml_value *v = mk_toml_table_get(t, k);
    if (!v)
        fail_msg("key '%s' missing", k);
    return v;
}

static void test_accessors(void **state)
{
    (void)state;
    mk_toml_doc *doc = parse_ok("title = \"TOML \\u00e9x\\tample\"\n"
                                "n = -17\n"
                                "pi = 3.25\n"
                                "ok = true\n"
                                "off = false\n"
                                "list = [1, 'two', [3.5], {x = 4}]\n"
                                "[owner]\n"
                                "name = 'Tom'\n"
                                "[[run]]\n"
                                "id = 1\n"
                                "[[run]]\n"
                                "id = 2\n");
    const mk_toml_value *root = mk_toml_root(doc);
    assert_string_equal(mk_toml_filename(doc), "t.toml");
    assert_int_equal(mk_toml_type_of(root), MK_TOML_TABLE);
    /* insertion order */
    static const char *keys[] = {"title", "n", "pi", "ok", "off", "list", "owner", "run"};
    assert_int_equal(mk_toml_table_len(root), 8);
    for (size_t i = 0; i < 8; i++) {
        assert_string_equal(mk_toml_table_key(root, i), keys[i]);
        assert_int_equal(mk_toml_table_key_len(root, i), strlen(keys[i]));
        assert_int_equal(mk_toml_table_find(root, keys[i]), (long)i);
        assert_ptr_equal(mk_toml_table_at(root, i), mk_toml_table_get(root, keys[i]));
    }
    assert_null(mk_toml_table_get(root, "absent"));
    assert_int_equal(mk_toml_table_find(root, "absent"), -1);

    size_t len = 0;
    const char *s = mk_toml_string(get(root, "title"), &len);
    assert_string_equal(s, "TOML \xc3\xa9x\tample");
    assert_int_equal(len, strlen("TOML \xc3\xa9x\tample"));
    assert_int_equal(mk_toml_int(get(root, "n")), -17);
    assert_true(mk_toml_float(get(root, "pi")) == 3.25);
    assert_int_equal(mk_toml_bool(get(root, "ok")), 1);
    assert_int_equal(mk_toml_bool(get(root, "off")), 0);

    const mk_toml_value *list = get(root, "list");
    assert_int_equal(mk_toml_type_of(list), MK_TOML_ARRAY);
    assert_int_equal(mk_toml_array_len(list), 4);
    assert_int_equal(mk_toml_type_of(mk_toml_array_at(list, 0)), MK_TOML_INTEGER);
    assert_string_equal(mk_toml_string(mk_toml_array_at(list, 1), NULL), "two");
    assert_true(mk_toml_float(mk_toml_array_at(mk_toml_array_at(list, 2), 0)) == 3.5);
    assert_int_equal(mk_toml_int(get(mk_toml_array_at(list, 3), "x")), 4);
    assert_null(mk_toml_array_at(list, 4));

    assert_string_equal(mk_toml_string(get(get(root, "owner"), "name"), NULL), "Tom");
    const mk_toml_value *run = get(root, "run");
    assert_int_equal(mk_toml_array_len(run), 2);
    assert_int_equal(mk_toml_int(get(mk_toml_array_at(run, 1), "id")), 2);

    assert_string_equal(mk_toml_type_name(MK_TOML_TABLE), "table");
    assert_string_equal(mk_toml_type_name(MK_TOML_INTEGER), "integer");
    assert_string_equal(mk_toml_type_name(MK_TOML_DATE_LOCAL), "local date");
    /* wrong-type accessors are harmless */
    assert_null(mk_toml_string(get(root, "n"), NULL));
    assert_int_equal(mk_toml_table_len(list), 0);
    mk_toml_free(doc);
    mk_toml_free(NULL);
}

static void test_strings(void **state)
{
    (void)state;
    mk_toml_doc *doc = parse_ok("a = \"q\\\"b\\\\s\\b\\f\\n\\r\\U0001F600\"\n"
                                "b = \"\"\"\n  one\n  two\\\n      three\"\"\"\n"
                                "c = 'C:\\path'\n"
                                "d = '''\nraw \\n ''line'''''\n"
                                "\"\\u0000\" = \"nul\\u0000in\"\n"
                                "e = \"\"\"\"q\"\"\"\"\n");
    const mk_toml_value *r = mk_toml_root(doc);
    assert_string_equal(mk_toml_string(get(r, "a"), NULL), "q\"b\\s\b\f\n\r\xf0\x9f\x98\x80");
    assert_string_equal(mk_toml_string(get(r, "b"), NULL), "  one\n  twothree");
    assert_string_equal(mk_toml_string(get(r, "c"), NULL), "C:\\path");
    assert_string_equal(mk_toml_string(get(r, "d"), NULL), "raw \\n ''line''");
    assert_string_equal(mk_toml_string(get(r, "e"), NULL), "\"q\"");
    /* keys and strings may hold NUL: lengths carry them */
    const mk_toml_value *v = mk_toml_table_getn(r, "\0", 1);
    assert_non_null(v);
    size_t len;
    const char *s = mk_toml_string(v, &len);
    assert_int_equal(len, 6);
    assert_memory_equal(s, "nul\0in", 6);
    assert_int_equal(mk_toml_table_key_len(r, 4), 1);
    mk_toml_free(doc);
    /* empty keys are legal once; '' and "" are the same key */
    doc = parse_ok("'' = 1\n");
    assert_int_equal(mk_toml_int(get(mk_toml_root(doc), "")), 1);
    mk_toml_free(doc);
    EXPECT_ERROR("'' = 1\n\"\" = 2\n",
                 "t.toml:2:1: duplicate key '\"\"': already defined as an integer at line 1, "
                 "column 1");
}

static void test_positions(void **state)
{
    (void)state;
    /* positions are 1-based; columns count code points ("é" is one column) */
    const char *lf = "# comment\n"
                     "title = \"h\xc3\xa9llo\"\n"
                     "[server]\n"
                     "  port = 8080\n"
                     "  \"\xc3\xa9 k\".x = true\n"
                     "[[job]]\n"
                     "name = 'a'\n"
                     "[[job]]\n"
                     "s = \"\"\"\nx\ny\"\"\"\n"
                     "after = 1\n";
    /* the same document with CRLF line ends gives the same positions */
    char crlf[512];
    size_t o = 0;
    for (const char *p = lf; *p; p++) {
        if (*p == '\n')
            crlf[o++] = '\r';
        crlf[o++] = *p;
    }
    crlf[o] = '\0';
    const char *docs[2] = {lf, crlf};
    for (int d = 0; d < 2; d++) {
        mk_toml_doc *doc = parse_ok(docs[d]);
        const mk_toml_value *r = mk_toml_root(doc);
        assert_int_equal(mk_toml_line(r), 1);
        assert_int_equal(mk_toml_table_key_line(r, 0), 2); /* title */
        assert_int_equal(mk_toml_table_key_col(r, 0), 1);
        assert_int_equal(mk_toml_line(get(r, "title")), 2);
        assert_int_equal(mk_toml_col(get(r, "title")), 9);
        const mk_toml_value *srv = get(r, "server");
        assert_int_equal(mk_toml_line(srv), 3);
        assert_int_equal(mk_toml_col(srv), 1);
        assert_int_equal(mk_toml_table_key_line(r, 1), 3);
        assert_int_equal(mk_toml_table_key_col(r, 1), 2);
        assert_int_equal(mk_toml_table_key_line(srv, 0), 4);
        assert_int_equal(mk_toml_table_key_col(srv, 0), 3);
        assert_int_equal(mk_toml_col(get(srv, "port")), 10);
        /* "é k".x = true: the quoted segment at col 3, x at col 9, true at col 13 */
        const mk_toml_value *ek = get(srv, "\xc3\xa9 k");
        assert_int_equal(mk_toml_table_key_col(srv, 1), 3);
        assert_int_equal(mk_toml_line(ek), 5);
        assert_int_equal(mk_toml_table_key_col(ek, 0), 9);
        assert_int_equal(mk_toml_col(get(ek, "x")), 13);
        const mk_toml_value *job = get(r, "job");
        assert_int_equal(mk_toml_table_key_col(r, 2), 3);
        assert_int_equal(mk_toml_line(mk_toml_array_at(job, 0)), 6);
        assert_int_equal(mk_toml_line(mk_toml_array_at(job, 1)), 8);
        const mk_toml_value *j1 = mk_toml_array_at(job, 1);
        assert_int_equal(mk_toml_line(get(j1, "s")), 9);
        assert_int_equal(mk_toml_col(get(j1, "s")), 5);
        assert_string_equal(mk_toml_string(get(j1, "s"), NULL), "x\ny");
        assert_int_equal(mk_toml_line(get(j1, "after")), 12);
        assert_int_equal(mk_toml_table_key_line(j1, 1), 12);
        mk_toml_free(doc);
    }
    /* a table created implicitly by [a.b] takes the position of its later [a] header */
    mk_toml_doc *doc = parse_ok("[a.b]\nx = 1\n\n  [ a ]\ny = 2\n");
    const mk_toml_value *a = get(mk_toml_root(doc), "a");
    assert_int_equal(mk_toml_line(a), 4);
    assert_int_equal(mk_toml_col(a), 3);
    assert_int_equal(mk_toml_table_key_line(mk_toml_root(doc), 0), 4);
    assert_int_equal(mk_toml_table_key_col(mk_toml_root(doc), 0), 5);
    mk_toml_free(doc);
}

static void test_error_messages(void **state)
{
    (void)state;
    EXPECT_ERROR(
        "a = 1\na = 2\n",
        "t.toml:2:1: duplicate key 'a': already defined as an integer at line 1, column 1");
    EXPECT_ERROR("[a]\nx=1\n[a]\n", "t.toml:3:1: table [a] defined twice: it is already a table "
                                    "defined by a [header] (defined at line 1, column 2)");
    EXPECT_ERROR("name = \"abc\n", "t.toml:1:12: unterminated string: expected closing \" before "
                                   "the end of the line (use \"\"\" for multi-line strings)");
    EXPECT_ERROR("x = 0x_ff\n",
                 "t.toml:1:7: invalid hexadecimal integer: '_' must be between two digits");
    EXPECT_ERROR("x = 1__0\n", "t.toml:1:6: invalid number: '_' must be between two digits");
    EXPECT_ERROR("x = 012\n", "t.toml:1:5: invalid number: leading zeros are not allowed");
    EXPECT_ERROR("x = +0o7\n",
                 "t.toml:1:5: invalid octal integer: a sign is not allowed with the 0o prefix");
    EXPECT_ERROR("x = 1.\n", "t.toml:1:7: invalid float: expected a digit after '.', found end "
                             "of line");
    EXPECT_ERROR("d = 2023-02-29\n",
                 "t.toml:1:13: invalid date: day 29 is out of range for 2023-02 (1-28)");
    EXPECT_ERROR("d = 2023-01-01T24:00:00\n",
                 "t.toml:1:16: invalid time: hour 24 is out of range 00-23");
    EXPECT_ERROR("d = 2023-01-01T10:00:00+24:00\n",
                 "t.toml:1:24: invalid time offset +24:00: hours must be 00-23 and minutes 00-59");
    EXPECT_ERROR("t = 07:32\n",
                 "t.toml:1:5: invalid time: expected HH:MM:SS (two digits each, seconds required)");
    EXPECT_ERROR("t = {a = 1,}\n", "t.toml:1:12: trailing comma is not allowed in an inline table");
    EXPECT_ERROR("t = {a = 1\n}\n", "t.toml:1:11: newlines are not allowed inside an inline table "
                                    "(expected ',' or '}')");
    EXPECT_ERROR("a = 1\rb = 2\n", "t.toml:1:6: carriage return not followed by line feed (bare CR "
                                   "is not a valid line ending)");
    EXPECT_ERROR("[fruit]\napple.color = 'red'\n[fruit.apple]\n",
                 "t.toml:3:1: table [fruit.apple] defined twice: it is already a table defined by "
                 "dotted keys (defined at line 2, column 1)");
    EXPECT_ERROR(
        "k = \"a\\qb\"\n",
        "t.toml:1:7: invalid escape sequence: expected one of \\b \\t \\n \\f \\r \\\" \\\\ "
        "\\uXXXX \\UXXXXXXXX, found '\\' followed by 'q'");
    EXPECT_ERROR("k = \"\\uD800\"\n", "t.toml:1:6: invalid escape: U+D800 is not a Unicode scalar "
                                      "value (surrogate or above U+10FFFF)");
    EXPECT_ERROR("a = \"\xc0\xaf\"\n", "t.toml:1:6: invalid UTF-8: byte 0xC0 does not start a "
                                       "valid UTF-8 sequence (overlong, surrogate, truncated or "
                                       "out of range)");
    EXPECT_ERROR("# ok\n# \xed\xa0\x80 surrogate\n",
                 "t.toml:2:3: invalid UTF-8: byte 0xED does not start a valid UTF-8 sequence "
                 "(overlong, surrogate, truncated or out of range)");
    EXPECT_ERROR("a = [1, 2\n",
                 "t.toml:1:5: unterminated array: expected ']' before the end of file");
    EXPECT_ERROR("key value\n", "t.toml:1:5: expected '=' after key 'key', found 'v'");
    EXPECT_ERROR("a = yes\n", "t.toml:1:5: expected a value (string, number, boolean, date-time, "
                              "array or inline table), found 'y'");
    EXPECT_ERROR("a = true\n[a.b]\n", "t.toml:2:2: cannot define table 'a.b': 'a' is already a "
                                      "boolean (defined at line 1, column 1)");
    EXPECT_ERROR("x = [1]\n[[x]]\n", "t.toml:2:1: cannot append to [[x]]: it is already an array "
                                     "(defined at line 1, column 1), not an array of tables");
    EXPECT_ERROR("a = {b = 1}\na.c = 2\n",
                 "t.toml:2:1: cannot add keys to 'a' with a dotted key: it is already an inline "
                 "table (defined at line 1, column 1), and inline tables cannot be extended");
    EXPECT_ERROR("a = 1 # bad \x7f\n",
                 "t.toml:1:13: control character U+007F is not allowed in a comment");
    /* a NUL byte inside the buffer is an error, not the end of the document */
    expect_error("a = 1\n\0b = 2\n", 13,
                 "t.toml:2:1: expected a key (letters, digits, '_', '-' or a quoted string), "
                 "found control character U+0000");
}

static void test_missing_file(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_toml_doc *doc = NULL;
    assert_int_equal(mk_toml_parse_file(&ctx, "/nonexistent/medkd/run.toml", &doc), MK_ERR_IO);
    assert_null(doc);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "/nonexistent/medkd/run.toml"));

    /* a real file: the message carries its path */
    char path[] = "/tmp/mk_test_toml_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *txt = "ok = 1\nbad = \n";
    assert_int_equal(write(fd, txt, strlen(txt)), (ssize_t)strlen(txt));
    close(fd);
    assert_int_equal(mk_toml_parse_file(&ctx, path, &doc), MK_ERR_CONFIG);
    char want[128];
    snprintf(want, sizeof want, "%s:2:7: expected a value, found end of line", path);
    assert_string_equal(mk_ctx_errmsg(&ctx), want);
    unlink(path);
}

static void test_nesting_cap(void **state)
{
    (void)state;
    enum { N = MK_TOML_MAX_DEPTH };
    char *src = malloc(4 * N + 64);
    assert_non_null(src);
    /* N nested arrays below the root is allowed */
    size_t o = (size_t)sprintf(src, "a = ");
    for (int i = 0; i < N; i++)
        src[o++] = '[';
    for (int i = 0; i < N; i++)
        src[o++] = ']';
    src[o] = '\0';
    mk_toml_doc *doc = parse_ok(src);
    const mk_toml_value *v = get(mk_toml_root(doc), "a");
    int depth = 0;
    while (mk_toml_type_of(v) == MK_TOML_ARRAY) {
        depth++;
        v = mk_toml_array_at(v, 0);
    }
    assert_int_equal(depth, N);
    mk_toml_free(doc);
    /* one more level is rejected with a message, not a crash */
    o = (size_t)sprintf(src, "a = ");
    for (int i = 0; i < N + 1; i++)
        src[o++] = '[';
    src[o] = '\0';
    char want[128];
    snprintf(want, sizeof want,
             "t.toml:1:%d: nesting too deep: more than %d levels of arrays and tables", 4 + N + 1,
             N);
    expect_error(src, o, want);
    /* the same cap holds for inline tables and for dotted keys */
    o = (size_t)sprintf(src, "a = ");
    for (int i = 0; i < N + 10; i++)
        o += (size_t)sprintf(src + o, "{b=");
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    doc = NULL;
    assert_int_equal(parse_n(&ctx, src, o, &doc), MK_ERR_CONFIG);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "nesting too deep"));
    o = 0;
    for (int i = 0; i < N + 1; i++)
        o += (size_t)sprintf(src + o, "k.");
    o += (size_t)sprintf(src + o, "x = 1\n");
    assert_int_equal(parse_n(&ctx, src, o, &doc), MK_ERR_CONFIG);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "nesting too deep"));
    free(src);
}

static void test_integers(void **state)
{
    (void)state;
    mk_toml_doc *doc =
        parse_ok("max = 9223372036854775807\n"
                 "min = -9223372036854775808\n"
                 "hmax = 0x7FFF_FFFF_FFFF_FFFF\n"
                 "omax = 0o777777777777777777777\n"
                 "bmax = 0b111111111111111111111111111111111111111111111111111111111111111\n"
                 "h = 0xdead_BEEF\n"
                 "o = 0o755\n"
                 "b = 0b1010\n"
                 "p = +99\n"
                 "z = -0\n"
                 "u = 1_000_000\n");
    const mk_toml_value *r = mk_toml_root(doc);
    assert_true(mk_toml_int(get(r, "max")) == INT64_MAX);
    assert_true(mk_toml_int(get(r, "min")) == INT64_MIN);
    assert_true(mk_toml_int(get(r, "hmax")) == INT64_MAX);
    assert_true(mk_toml_int(get(r, "omax")) == INT64_MAX);
    assert_true(mk_toml_int(get(r, "bmax")) == INT64_MAX);
    assert_true(mk_toml_int(get(r, "h")) == 3735928559LL);
    assert_true(mk_toml_int(get(r, "o")) == 493);
    assert_true(mk_toml_int(get(r, "b")) == 10);
    assert_true(mk_toml_int(get(r, "p")) == 99);
    assert_true(mk_toml_int(get(r, "z")) == 0);
    assert_true(mk_toml_int(get(r, "u")) == 1000000);
    mk_toml_free(doc);
    EXPECT_ERROR("n = 9223372036854775808\n",
                 "t.toml:1:5: integer 9223372036854775808 is out of range (must be between "
                 "-9223372036854775808 and 9223372036854775807)");
    EXPECT_ERROR("n = -9223372036854775809\n",
                 "t.toml:1:5: integer -9223372036854775809 is out of range (must be between "
                 "-9223372036854775808 and 9223372036854775807)");
    EXPECT_ERROR("n = 0x8000000000000000\n",
                 "t.toml:1:5: integer 0x8000000000000000 is out of range (must fit a signed "
                 "64-bit integer, max 9223372036854775807)");
    EXPECT_ERROR("n = 99999999999999999999999999\n",
                 "t.toml:1:5: integer 99999999999999999999999999 is out of range (must be between "
                 "-9223372036854775808 and 9223372036854775807)");
}

static void test_floats(void **state)
{
    (void)state;
    mk_toml_doc *doc = parse_ok("a = 0.1\nb = -1.5e-3\nc = 6.626e-34\nd = 1_000.000_5\n"
                                "e = 5E+22\nf = inf\ng = -inf\nh = nan\ni = -0.0\nj = 0e0\n"
                                "k = 3.141592653589793\n");
    const mk_toml_value *r = mk_toml_root(doc);
    assert_true(mk_toml_float(get(r, "a")) == 0.1);
    assert_true(mk_toml_float(get(r, "b")) == -1.5e-3);
    assert_true(mk_toml_float(get(r, "c")) == 6.626e-34);
    assert_true(mk_toml_float(get(r, "d")) == 1000.0005);
    assert_true(mk_toml_float(get(r, "e")) == 5e22);
    assert_true(isinf(mk_toml_float(get(r, "f"))) && mk_toml_float(get(r, "f")) > 0);
    assert_true(isinf(mk_toml_float(get(r, "g"))) && mk_toml_float(get(r, "g")) < 0);
    assert_true(isnan(mk_toml_float(get(r, "h"))));
    assert_true(mk_toml_float(get(r, "i")) == 0.0 && signbit(mk_toml_float(get(r, "i"))));
    assert_true(mk_toml_float(get(r, "j")) == 0.0);
    assert_true(mk_toml_float(get(r, "k")) == 3.141592653589793);
    assert_int_equal(mk_toml_type_of(get(r, "j")), MK_TOML_FLOAT);
    mk_toml_free(doc);
}

/* Decimal floats must equal the C library's strtod (an independent, correctly rounded reference)
 * bit for bit, whether or not the parser takes its exact fast path. */
static void test_floats_vs_strtod(void **state)
{
    (void)state;
    uint32_t seed = 777;
    char clean[80], toml[96], doc[128];
    for (int it = 0; it < 4000; it++) {
        size_t o = 0, t = 0;
        seed = seed * 1103515245u + 12345u;
        int nint = 1 + (int)((seed >> 8) % 12), nfrac = (int)((seed >> 16) % 12);
        seed = seed * 1103515245u + 12345u;
        int expo = (int)((seed >> 8) % 81) - 40, use_exp = (seed >> 20) & 1;
        if ((seed >> 24) & 1) {
            clean[o++] = '-';
            toml[t++] = '-';
        }
        for (int i = 0; i < nint; i++) {
            seed = seed * 1103515245u + 12345u;
            char d = (char)('0' + (i == 0 && nint > 1 ? 1 + (seed >> 8) % 9 : (seed >> 8) % 10));
            if (i > 0 && ((seed >> 20) & 3) == 0)
                toml[t++] = '_';
            clean[o++] = d;
            toml[t++] = d;
        }
        if (nfrac || !use_exp) {
            clean[o++] = '.';
            toml[t++] = '.';
            for (int i = 0; i < (nfrac ? nfrac : 1); i++) {
                seed = seed * 1103515245u + 12345u;
                clean[o++] = toml[t++] = (char)('0' + (seed >> 8) % 10);
            }
        }
        if (use_exp) {
            o += (size_t)snprintf(clean + o, sizeof clean - o, "e%d", expo);
            t += (size_t)snprintf(toml + t, sizeof toml - t, "E%+d", expo);
        }
        clean[o] = '\0';
        toml[t] = '\0';
        snprintf(doc, sizeof doc, "x = %s\n", toml);
        mk_toml_doc *d = parse_ok(doc);
        double got = mk_toml_float(get(mk_toml_root(d), "x")), want = strtod(clean, NULL);
        if (memcmp(&got, &want, sizeof got) != 0)
            fail_msg("%s: got %.17g, strtod(%s) = %.17g", toml, got, clean, want);
        mk_toml_free(d);
    }
}

static void test_datetimes(void **state)
{
    (void)state;
    mk_toml_doc *doc = parse_ok("odt = 1979-05-27T00:32:00.999999-07:30\n"
                                "z = 1979-05-27 07:32:00z\n"
                                "ldt = 2000-02-29T23:59:60\n"
                                "ld = 2024-12-31\n"
                                "lt = 07:32:00.5\n"
                                "ns = 00:00:00.1234567891\n");
    const mk_toml_value *r = mk_toml_root(doc);
    const mk_toml_datetime *dt = mk_toml_dt(get(r, "odt"));
    assert_int_equal(mk_toml_type_of(get(r, "odt")), MK_TOML_DATETIME);
    assert_int_equal(dt->year, 1979);
    assert_int_equal(dt->month, 5);
    assert_int_equal(dt->day, 27);
    assert_int_equal(dt->hour, 0);
    assert_int_equal(dt->minute, 32);
    assert_int_equal(dt->second, 0);
    assert_int_equal(dt->nanosecond, 999999000);
    assert_int_equal(dt->frac_digits, 6);
    assert_int_equal(dt->offset_minutes, -(7 * 60 + 30));
    assert_int_equal(dt->offset_z, 0);
    dt = mk_toml_dt(get(r, "z"));
    assert_int_equal(mk_toml_type_of(get(r, "z")), MK_TOML_DATETIME);
    assert_int_equal(dt->offset_z, 1);
    assert_int_equal(dt->offset_minutes, 0);
    assert_int_equal(dt->hour, 7);
    dt = mk_toml_dt(get(r, "ldt"));
    assert_int_equal(mk_toml_type_of(get(r, "ldt")), MK_TOML_DATETIME_LOCAL);
    assert_int_equal(dt->day, 29); /* 2000 is a leap year (divisible by 400) */
    assert_int_equal(dt->second, 60);
    dt = mk_toml_dt(get(r, "ld"));
    assert_int_equal(mk_toml_type_of(get(r, "ld")), MK_TOML_DATE_LOCAL);
    assert_int_equal(dt->year, 2024);
    assert_int_equal(dt->hour, 0);
    dt = mk_toml_dt(get(r, "lt"));
    assert_int_equal(mk_toml_type_of(get(r, "lt")), MK_TOML_TIME_LOCAL);
    assert_int_equal(dt->year, 0);
    assert_int_equal(dt->nanosecond, 500000000);
    assert_int_equal(dt->frac_digits, 1);
    dt = mk_toml_dt(get(r, "ns"));
    assert_int_equal(dt->nanosecond, 123456789); /* truncated, not rounded */
    assert_int_equal(dt->frac_digits, 10);
    assert_null(mk_toml_dt(r));
    mk_toml_free(doc);
    /* 1900 is not a leap year (divisible by 100, not by 400); 2024 is */
    EXPECT_ERROR("d = 1900-02-29\n",
                 "t.toml:1:13: invalid date: day 29 is out of range for 1900-02 (1-28)");
    doc = parse_ok("d = 2024-02-29\n");
    mk_toml_free(doc);
    EXPECT_ERROR("d = 2024-04-31\n",
                 "t.toml:1:13: invalid date: day 31 is out of range for 2024-04 (1-30)");
    EXPECT_ERROR("d = 2024-13-01\n", "t.toml:1:10: invalid date: month 13 is out of range 01-12");
    EXPECT_ERROR("t = 12:60:00\n", "t.toml:1:8: invalid time: minute 60 is out of range 00-59");
    EXPECT_ERROR("t = 12:00:61\n", "t.toml:1:11: invalid time: second 61 is out of range 00-60");
}

static void test_tables_rules(void **state)
{
    (void)state;
    /* valid: sub-tables under dotted-key tables, implicit then explicit, AOT sub-tables */
    mk_toml_doc *doc = parse_ok("[fruit]\napple.color = 'red'\napple.taste.sweet = true\n"
                                "[fruit.apple.texture]\nsmooth = true\n"
                                "[x.y.z]\n[x]\nw = 1\n"
                                "[[a.b]]\n[a.b.c]\nd = 1\n[[a.b]]\n[a.b.c]\nd = 2\n");
    const mk_toml_value *r = mk_toml_root(doc);
    const mk_toml_value *apple = get(get(r, "fruit"), "apple");
    assert_int_equal(mk_toml_bool(get(get(apple, "taste"), "sweet")), 1);
    assert_int_equal(mk_toml_bool(get(get(apple, "texture"), "smooth")), 1);
    assert_int_equal(mk_toml_int(get(get(r, "x"), "w")), 1);
    const mk_toml_value *ab = get(get(r, "a"), "b");
    assert_int_equal(mk_toml_array_len(ab), 2);
    assert_int_equal(mk_toml_int(get(get(mk_toml_array_at(ab, 1), "c"), "d")), 2);
    mk_toml_free(doc);

    mk_ctx ctx;
    mk_ctx_init(&ctx);
    static const char *bad[] = {
        "[a]\n[a]\n",
        "[a.b]\n[a]\n[a]\n",
        "a = 1\n[a]\n",
        "a.b = 1\n[a.b]\n",
        "a = {}\n[a.b]\n",
        "a = {}\na.b = 1\n",
        "[[a]]\n[a]\n",
        "[a]\n[[a]]\n",
        "a = []\n[[a]]\n",
        "[a.b.c]\nz=9\n[a]\nb.c.t=1\n",
        "[[a.b]]\n[a]\nb.y = 2\n",
        "a = {b.c = 1, b = 2}\n",
        "a.b = 1\na.b.c = 2\n",
        "a = [{b=1}]\n[a.c]\n",
        "[t]\nx.y = 1\n[t.x]\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        doc = (mk_toml_doc *)1;
        if (parse_n(&ctx, bad[i], strlen(bad[i]), &doc) != MK_ERR_CONFIG)
            fail_msg("accepted invalid document %zu: %s", i, bad[i]);
        assert_null(doc);
        assert_true(strncmp(mk_ctx_errmsg(&ctx), "t.toml:", 7) == 0);
    }
}

/* Tables large enough to use the hash index keep order and find every key. */
static void test_large_table(void **state)
{
    (void)state;
    enum { N = 5000 };
    char *src = malloc((size_t)N * 32);
    assert_non_null(src);
    size_t o = 0;
    for (int i = 0; i < N; i++)
        o += (size_t)sprintf(src + o, "k%d = %d\n", (i * 7919) % N, i);
    src[o] = '\0';
    mk_toml_doc *doc = parse_ok(src);
    const mk_toml_value *r = mk_toml_root(doc);
    assert_int_equal(mk_toml_table_len(r), N);
    for (int i = 0; i < N; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", (i * 7919) % N);
        assert_string_equal(mk_toml_table_key(r, (size_t)i), k);
        assert_int_equal(mk_toml_int(get(r, k)), i);
    }
    mk_toml_free(doc);
    /* long arrays and arrays of tables (their item arrays move from the arena to the heap) */
    char *big = malloc(64 * 1024);
    assert_non_null(big);
    size_t b = (size_t)sprintf(big, "arr = [");
    for (int i = 0; i < 3000; i++)
        b += (size_t)sprintf(big + b, "%d,%s", i * 3, i % 10 == 9 ? "\n" : " ");
    b += (size_t)sprintf(big + b, "]\n");
    for (int i = 0; i < 300; i++)
        b += (size_t)sprintf(big + b, "[[t]]\nid = %d\n", i);
    big[b] = '\0';
    doc = parse_ok(big);
    const mk_toml_value *arr = get(mk_toml_root(doc), "arr"), *t = get(mk_toml_root(doc), "t");
    assert_int_equal(mk_toml_array_len(arr), 3000);
    assert_int_equal(mk_toml_array_len(t), 300);
    for (int i = 0; i < 3000; i++)
        assert_true(mk_toml_int(mk_toml_array_at(arr, (size_t)i)) == i * 3);
    for (int i = 0; i < 300; i++)
        assert_true(mk_toml_int(get(mk_toml_array_at(t, (size_t)i), "id")) == i);
    /* 300 newlines inside the array put ']' on line 301; [[t]] number i is on line 302 + 2i */
    assert_int_equal(mk_toml_line(mk_toml_array_at(t, 299)), 302 + 2 * 299);
    mk_toml_free(doc);
    free(big);
    /* a duplicate late in a big table is still found */
    o += (size_t)sprintf(src + o, "k1234 = 0\n");
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(parse_n(&ctx, src, o, &doc), MK_ERR_CONFIG);
    char want[160];
    /* k1234 is written on the line i with i*7919 % N == 1234 */
    int line = 0;
    for (int i = 0; i < N; i++)
        if ((i * 7919) % N == 1234)
            line = i + 1;
    snprintf(want, sizeof want,
             "t.toml:%d:1: duplicate key 'k1234': already defined as an integer at line %d, "
             "column 1",
             N + 1, line);
    assert_string_equal(mk_ctx_errmsg(&ctx), want);
    free(src);
}

/* Every prefix and many byte mutations of a rich document: no crash, no over-read (ASan), and
 * every rejection carries "t.toml:LINE:COL: ". */
static void test_truncations_and_mutations(void **state)
{
    (void)state;
    static const char rich[] =
        "\xef\xbb\xbf# rich \xc3\xa9\r\n"
        "title = \"a\\u00e9\\\"b\" # c\n"
        "ml = \"\"\"\nx \\\n  y\"\"\"\nlit = '''\nz'''\n"
        "n = [0x1F, 0o7, 0b1, -1_000, +3.5e-2, inf, nan]\n"
        "dt = [1979-05-27T07:32:00.5-07:00, 1979-05-27 07:32:00, 1979-05-27, 07:32:00]\n"
        "it = {a.b = 1, c = [{d = 'e'}], f = true}\n"
        "[t.\"q k\"]\nx = 1\n[[aot]]\ny = 2\n[[aot]]\n";
    const size_t len = sizeof rich - 1;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_toml_doc *doc = NULL;
    assert_int_equal(parse_n(&ctx, rich, len, &doc), MK_OK);
    mk_toml_free(doc);
    for (size_t n = 0; n < len; n++) {
        doc = NULL;
        mk_status st = parse_n(&ctx, rich, n, &doc);
        if (st == MK_OK) {
            mk_toml_free(doc);
            continue;
        }
        assert_int_equal(st, MK_ERR_CONFIG);
        int line, col;
        assert_int_equal(sscanf(mk_ctx_errmsg(&ctx), "t.toml:%d:%d: ", &line, &col), 2);
        assert_true(line >= 1 && col >= 1);
    }
    char buf[sizeof rich];
    uint32_t seed = 12345;
    static const char bytes[] = "[]{}=.,\"'\\#\n\r\t _-+:0aZ\x80\xc3\xff";
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, rich, len);
        for (int m = 0; m < 3; m++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % len;
            seed = seed * 1103515245u + 12345u;
            buf[pos] = bytes[(seed >> 8) % (sizeof bytes - 1)];
        }
        doc = NULL;
        mk_status st = parse_n(&ctx, buf, len, &doc);
        if (st == MK_OK) {
            mk_toml_free(doc);
            continue;
        }
        assert_int_equal(st, MK_ERR_CONFIG);
        int line, col;
        assert_int_equal(sscanf(mk_ctx_errmsg(&ctx), "t.toml:%d:%d: ", &line, &col), 2);
    }
}

/* A quoted key of escapes long enough to fill the message's key buffer: the NUL was written one
 * past the buffer (found by fuzz/fuzz_toml; the sanitizer build of this test caught it). */
static void test_long_escaped_key_message(void **state)
{
    (void)state;
    for (int pre = 0; pre < 6; pre++) { /* every alignment of the 6-byte escapes */
        char doc[1024];
        size_t o = (size_t)snprintf(doc, sizeof doc, "run.\"ab%.*s", pre, "cdefgh");
        for (int i = 0; i < 60; i++)
            o += (size_t)snprintf(doc + o, sizeof doc - o, "\\\\");
        snprintf(doc + o, sizeof doc - o, "\" 1\n");
        mk_ctx ctx;
        mk_ctx_init(&ctx);
        mk_toml_doc *d = NULL;
        assert_int_equal(mk_toml_parse(&ctx, "k.toml", doc, strlen(doc), &d), MK_ERR_CONFIG);
        assert_null(d);
        assert_non_null(strstr(mk_ctx_errmsg(&ctx), "expected '=' after key 'run.\"ab"));
        assert_non_null(strstr(mk_ctx_errmsg(&ctx), "\\u005C\\u005C"));
        assert_non_null(strstr(mk_ctx_errmsg(&ctx), "..."));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accessors),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_nesting_cap),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_floats),
        cmocka_unit_test(test_floats_vs_strtod),
        cmocka_unit_test(test_datetimes),
        cmocka_unit_test(test_tables_rules),
        cmocka_unit_test(test_large_table),
        cmocka_unit_test(test_truncations_and_mutations),
        cmocka_unit_test(test_long_escaped_key_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
