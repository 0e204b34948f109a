/* Parameter rows: each parameter of medkd is declared once, beside the struct that holds it.
 *
 * A row names the config key, its TOML type, its default (as TOML text), its range or choices,
 * one line of documentation, and where the value lives in its C struct (field offset and size,
 * and how it is stored there). From the rows come
 *   - the config schema (pipeline/registry_schema.c collects them per section), validation,
 *     `pipeline validate --explain` and docs/config.md;
 *   - the binder (config: mk_cfg_bind fills a struct from a loaded config);
 *   - the C defaults (mk_param_defaults below: the same default text, parsed here), so defaults
 *     are never written twice.
 *
 *     typedef struct my_params { int iterations; float lr; int schedule; } my_params;
 *     static const mk_param_row MY_ROWS[] = {
 *         MK_P_INT(my_params, iterations, "iterations", "100", 1, 1e9, "training iterations"),
 *         MK_P_FLOAT(my_params, lr, "lr", "1e-3", 0, 1, "Adam learning rate"),
 *         MK_P_CHOICE(my_params, schedule, "schedule", "constant", "constant|poly", "LR schedule"),
 *     };
 *     my_params p; mk_param_defaults(MY_ROWS, 3, &p);   // p.iterations == 100, p.schedule == 0
 *
 * A field's size is checked against its storage at compile time (a mismatch does not compile).
 * Rows without storage (MK_BIND_NONE) are still config keys, read by name.
 */
#ifndef MK_PARAM_H
#define MK_PARAM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mk_param_type {
    MK_PARAM_STRING = 0,
    MK_PARAM_INT,
    MK_PARAM_FLOAT,
    MK_PARAM_BOOL,
    MK_PARAM_PATH,        /* string resolved relative to the config file's folder */
    MK_PARAM_STRING_LIST, /* array of strings */
    MK_PARAM_INT_LIST,    /* array of integers */
    MK_PARAM_FLOAT_LIST,  /* array of numbers */
    MK_PARAM_LABEL_TABLE, /* table of integer keys to names: {1 = "RV", 2 = "MYO"} */
    MK_PARAM_TYPE_COUNT
} mk_param_type;

/* How a row's value is stored in its struct. */
typedef enum mk_param_bind {
    MK_BIND_NONE = 0, /* not stored: read by name */
    MK_BIND_INT,      /* int */
    MK_BIND_FLOAT,    /* float */
    MK_BIND_DOUBLE,   /* double */
    MK_BIND_BOOL,     /* int 0/1 */
    MK_BIND_STR,      /* const char *, borrowed (from the config, or the row's default) */
    MK_BIND_CHOICE,   /* int: index of the value in the row's choices */
    MK_BIND_INTS,     /* int[count]: a list of exactly count integers */
    MK_BIND_DOUBLES,  /* double[count]: a list of exactly count numbers */
    MK_BIND_NAMES,    /* mk_names: a list of at most MK_NAMES_MAX short strings */
    MK_BIND_LABELS,   /* mk_label_table */
} mk_param_bind;

/* Key flags. */
enum {
    MK_PARAM_REQUIRED = 1 << 0,  /* must be present */
    MK_PARAM_MUST_EXIST = 1 << 1 /* PATH: the file or folder must exist (unless produced by a
                                    stage that runs earlier) */
};

#define MK_NAMES_MAX 8
#define MK_NAME_LEN 32
typedef struct mk_names {
    int n;
    char v[MK_NAMES_MAX][MK_NAME_LEN];
} mk_names;

#define MK_LABELS_MAX 64
typedef struct mk_label_table {
    int n;                    /* 0: not given */
    int value[MK_LABELS_MAX]; /* ascending */
    char name[MK_LABELS_MAX][MK_NAME_LEN];
} mk_label_table;

typedef struct mk_param_row {
    const char *name;
    mk_param_type type;
    const char *def;     /* default as TOML text ("1e-3", "\"deepmind\"", "[1, 2]"), NULL = none */
    double min, max;     /* numeric range (ints, floats, list elements); min > max: unbounded */
    const char *choices; /* STRING / STRING_LIST: "|"-separated allowed values, NULL = any */
    unsigned flags;
    const char *doc; /* one line */
    mk_param_bind bind;
    size_t offset, size; /* field in the struct (bind != NONE) */
    int count;           /* INTS / DOUBLES: the list's length */
    const char *sdef;    /* STR / CHOICE: the default without quotes */
} mk_param_row;

/* Fill every bound field of obj from the rows' defaults (fields of rows without a default are
 * zeroed). Fields not described by a row are left alone. */
void mk_param_defaults(const mk_param_row *rows, int n, void *obj);

/* Index of `value` among the "|"-separated `choices`, or -1. */
int mk_param_choice_index(const char *choices, const char *value);

/* --- row macros (S: struct type, f: field) --------------------------------------------------- */

#define MK__PCHK(S, f, T) (0 * sizeof(char[(sizeof(((S *)0)->f) == sizeof(T)) ? 1 : -1]))
#define MK__PAT(S, f, T) offsetof(S, f) + MK__PCHK(S, f, T), sizeof(((S *)0)->f)

#define MK_P_INT(S, f, name, def, lo, hi, doc)                                                     \
    {                                                                                              \
        name, MK_PARAM_INT, def, lo, hi, NULL, 0, doc, MK_BIND_INT, MK__PAT(S, f, int), 0, NULL    \
    }
#define MK_P_FLOAT(S, f, name, def, lo, hi, doc)                                                   \
    {                                                                                              \
        name, MK_PARAM_FLOAT, def, lo, hi, NULL, 0, doc, MK_BIND_FLOAT, MK__PAT(S, f, float), 0,   \
            NULL                                                                                   \
    }
#define MK_P_DOUBLE(S, f, name, def, lo, hi, doc)                                                  \
    {                                                                                              \
        name, MK_PARAM_FLOAT, def, lo, hi, NULL, 0, doc, MK_BIND_DOUBLE, MK__PAT(S, f, double), 0, \
            NULL                                                                                   \
    }
#define MK_P_BOOL(S, f, name, def, doc)                                                            \
    {                                                                                              \
        name, MK_PARAM_BOOL, def, 1, 0, NULL, 0, doc, MK_BIND_BOOL, MK__PAT(S, f, int), 0, NULL    \
    }
/* def without quotes: MK_P_STR(S, f, "split", "test", doc) */
#define MK_P_STR(S, f, name, def, doc)                                                             \
    {                                                                                              \
        name, MK_PARAM_STRING, "\"" def "\"", 1, 0, NULL, 0, doc, MK_BIND_STR,                     \
            MK__PAT(S, f, const char *), 0, def                                                    \
    }
#define MK_P_PATH(S, f, name, flags, doc)                                                          \
    {                                                                                              \
        name, MK_PARAM_PATH, NULL, 1, 0, NULL, flags, doc, MK_BIND_STR,                            \
            MK__PAT(S, f, const char *), 0, NULL                                                   \
    }
#define MK_P_CHOICE(S, f, name, def, choices, doc)                                                 \
    {                                                                                              \
        name, MK_PARAM_STRING, "\"" def "\"", 1, 0, choices, 0, doc, MK_BIND_CHOICE,               \
            MK__PAT(S, f, int), 0, def                                                             \
    }
#define MK_P_INTS(S, f, n, name, def, lo, hi, doc)                                                 \
    {                                                                                              \
        name, MK_PARAM_INT_LIST, def, lo, hi, NULL, 0, doc, MK_BIND_INTS, MK__PAT(S, f, int[n]),   \
            n, NULL                                                                                \
    }
#define MK_P_DOUBLES(S, f, n, name, def, lo, hi, doc)                                              \
    {                                                                                              \
        name, MK_PARAM_FLOAT_LIST, def, lo, hi, NULL, 0, doc, MK_BIND_DOUBLES,                     \
            MK__PAT(S, f, double[n]), n, NULL                                                      \
    }
#define MK_P_NAMES(S, f, name, def, doc)                                                           \
    {                                                                                              \
        name, MK_PARAM_STRING_LIST, def, 1, 0, NULL, 0, doc, MK_BIND_NAMES,                        \
            MK__PAT(S, f, mk_names), 0, NULL                                                       \
    }
#define MK_P_LABELS(S, f, name, doc)                                                               \
    {                                                                                              \
        name, MK_PARAM_LABEL_TABLE, NULL, 1, 255, NULL, 0, doc, MK_BIND_LABELS,                    \
            MK__PAT(S, f, mk_label_table), 0, NULL                                                 \
    }

#ifdef __cplusplus
}
#endif
#endif
