/* Parameter rows: defaults from the rows' TOML default text (see mk_param.h). The default texts are
 * the project's own literals (numbers, true/false, quoted strings without escapes, flat lists of
 * those); the config layer validates them against the same rows when a config is loaded. */
#include "mk_param.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mk_param_choice_index(const char *choices, const char *value)
{
    if (!choices || !value)
        return -1;
    size_t n = strlen(value);
    int i = 0;
    for (const char *p = choices;; i++) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0)
            return i;
        if (!e)
            return -1;
        p = e + 1;
    }
}

/* Elements of a flat list "[a, b, "c"]": calls f for each element text (quotes stripped). */
static int list_items(const char *s, char items[][64], int max)
{
    int n = 0;
    const char *p = strchr(s, '[');
    if (!p)
        return 0;
    p++;
    while (*p && *p != ']' && n < max) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == ']' || !*p)
            break;
        const char *b = p, *e;
        if (*p == '"') {
            b = ++p;
            e = strchr(p, '"');
            if (!e)
                break;
            p = e + 1;
        } else {
            e = p;
            while (*e && *e != ',' && *e != ']' && *e != ' ')
                e++;
            p = e;
        }
        size_t len = (size_t)(e - b) < 63 ? (size_t)(e - b) : 63;
        memcpy(items[n], b, len);
        items[n][len] = 0;
        n++;
    }
    return n;
}

void mk_param_defaults(const mk_param_row *rows, int n, void *obj)
{
    char *base = obj;
    for (int r = 0; r < n; r++) {
        const mk_param_row *P = &rows[r];
        if (P->bind == MK_BIND_NONE)
            continue;
        void *f = base + P->offset;
        memset(f, 0, P->size);
        if (!P->def)
            continue;
        char items[MK_LABELS_MAX][64];
        int k;
        switch (P->bind) {
        case MK_BIND_INT: *(int *)f = (int)strtoll(P->def, NULL, 10); break;
        case MK_BIND_FLOAT: *(float *)f = (float)strtod(P->def, NULL); break;
        case MK_BIND_DOUBLE: *(double *)f = strtod(P->def, NULL); break;
        case MK_BIND_BOOL: *(int *)f = strcmp(P->def, "true") == 0; break;
        case MK_BIND_STR: *(const char **)f = P->sdef; break;
        case MK_BIND_CHOICE: *(int *)f = mk_param_choice_index(P->choices, P->sdef); break;
        case MK_BIND_INTS:
            k = list_items(P->def, items, P->count);
            for (int i = 0; i < k; i++)
                ((int *)f)[i] = (int)strtoll(items[i], NULL, 10);
            break;
        case MK_BIND_DOUBLES:
            k = list_items(P->def, items, P->count);
            for (int i = 0; i < k; i++)
                ((double *)f)[i] = strtod(items[i], NULL);
            break;
        case MK_BIND_NAMES: {
            mk_names *nm = f;
            nm->n = list_items(P->def, items, MK_NAMES_MAX);
            for (int i = 0; i < nm->n; i++) {
                size_t len = strlen(items[i]);
                if (len > MK_NAME_LEN - 1)
                    len = MK_NAME_LEN - 1;
                memcpy(nm->v[i], items[i], len);
                nm->v[i][len] = 0;
            }
            break;
        }
        case MK_BIND_LABELS: /* no default table */
        case MK_BIND_NONE: break;
        }
    }
}
