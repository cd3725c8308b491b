/* config.c: the configuration file and -o key=value (see config.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

enum { K_VALUE, K_BOOL, K_LIST, K_PATHS, K_OUTPUTS, K_GEOIP };

typedef struct key {
  const char *name;
  const char *flag;
  int kind;
  int run_only;
} key;

static const key KEYS[] = {
  {"rules", "--rules", K_VALUE, 0},
  {"rule", "--rule", K_LIST, 0},
  {"max_line", "--max-line", K_VALUE, 0},
  {"workers", "--workers", K_VALUE, 0},
  {"max_time", "--max-time", K_VALUE, 0},
  {"max_worker_memory", "--max-worker-memory", K_VALUE, 0},
  {"max_instructions", "--max-instructions", K_VALUE, 0},
  {"max_memory", "--max-memory", K_VALUE, 0},
  {"quarantine_after", "--quarantine-after", K_VALUE, 0},
  {"no_prefilter", "--no-prefilter", K_BOOL, 0},
  {"no_max_signals", "--no-max-signals", K_BOOL, 0},
  {"max_state", "--max-state", K_VALUE, 0},
  {"output_buffer", "--output-buffer", K_VALUE, 0},
  {"outputs", "--output", K_OUTPUTS, 0},
  {"metrics", "--metrics", K_VALUE, 0},
  {"geoip", NULL, K_GEOIP, 0},
  {"paths", NULL, K_PATHS, 0},
  {"state", "--state", K_VALUE, 1},
  {"no_state", "--no-state", K_BOOL, 1},
  {"from_end", "--from-end", K_BOOL, 1},
  {"from_beginning", "--from-beginning", K_BOOL, 1},
  {"exclude", "--exclude", K_LIST, 1},
  {"ignore_older", "--ignore-older", K_VALUE, 1},
  {"max_open_files", "--max-open-files", K_VALUE, 1},
  {"rotate_wait", "--rotate-wait", K_VALUE, 1},
  {"rescan", "--rescan", K_VALUE, 1},
  {"poll", "--poll", K_VALUE, 1},
  {"stats_interval", "--stats-interval", K_VALUE, 1},
};
#define NKEYS (sizeof KEYS / sizeof KEYS[0])

static const char *const OUTPUT_KEYS[] = {"headers", "user", "password", "bearer", "ca_file", "insecure",
                                          "timeout", "connect_timeout", "facility", "app_name", NULL};

static const char *const FACILITIES[] = {"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
                                         "uucp", "cron", "authpriv", "ftp", "ntp", "security", "console",
                                         "solaris-cron", "local0", "local1", "local2", "local3", "local4",
                                         "local5", "local6", "local7", NULL};

typedef struct ctx {
  th_config *c;
  const char *path;        /* for messages: the file, or "-o" */
  const char *text;        /* the file's text (lines for messages), or NULL */
  int replay;
  char **skip;             /* the file's keys that -o sets instead */
  int nskip;
} ctx;

static int skipped(const ctx *x, const char *name) {
  for (int i = 0; i < x->nskip; i++) {
    size_t n = strcspn(x->skip[i], "=");
    if (strlen(name) == n && strncmp(x->skip[i], name, n) == 0) return 1;
  }
  return 0;
}

static char *own(th_config *c, const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p == NULL) return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  if (c->nowned == c->owned_cap) {
    int cap = c->owned_cap ? c->owned_cap * 2 : 32;
    char **o = realloc(c->owned, (size_t)cap * sizeof *o);
    if (o == NULL) {
      free(p);
      return NULL;
    }
    c->owned = o;
    c->owned_cap = cap;
  }
  c->owned[c->nowned++] = p;
  return p;
}

static int arg(th_config *c, const char *a) {
  if (c->nargs + 1 >= c->cap) {
    int cap = c->cap ? c->cap * 2 : 32;
    char **p = realloc(c->args, (size_t)cap * sizeof *p);
    if (p == NULL) return -1;
    c->args = p;
    c->cap = cap;
  }
  c->args[c->nargs++] = (char *)a;
  return 0;
}

/* Edit distance, for "did you mean". */
static int distance(const char *a, const char *b) {
  size_t n = strlen(b);
  if (n > 63) return 99;
  int row[64];
  for (size_t j = 0; j <= n; j++) row[j] = (int)j;
  for (size_t i = 1; a[i - 1]; i++) {
    int prev = row[0];
    row[0] = (int)i;
    for (size_t j = 1; j <= n; j++) {
      int cur = row[j];
      int sub = prev + (a[i - 1] != b[j - 1]);
      int best = row[j] + 1 < row[j - 1] + 1 ? row[j] + 1 : row[j - 1] + 1;
      row[j] = sub < best ? sub : best;
      prev = cur;
    }
  }
  return row[n];
}

/* The line of the file where name is set (name = ...), or 0. */
static int line_of(const ctx *x, const char *name) {
  if (x->text == NULL) return 0;
  size_t n = strlen(name);
  int line = 1;
  for (const char *p = x->text; *p; p++) {
    if (*p == '\n') line++;
    if (strncmp(p, name, n) == 0 && (p == x->text || !(p[-1] == '_' || isalnum((unsigned char)p[-1])))) {
      const char *q = p + n;
      while (*q == ' ' || *q == '\t') q++;
      if (*q == '=' && q[1] != '=') return line;
    }
  }
  return 0;
}

static int bad(const ctx *x, const char *name, const char *fmt, const char *what) {
  int line = name ? line_of(x, name) : 0;
  if (line) fprintf(stderr, "trailhound: %s:%d: ", x->path, line);
  else fprintf(stderr, "trailhound: %s: ", x->path);
  fprintf(stderr, fmt, what);
  fputs("\n(see trailhound --help)\n", stderr);
  return 2;
}

static int unknown(const ctx *x, const char *name, const char *const *known, size_t nknown, size_t stride) {
  const char *best = NULL;
  int bestd = 3;
  for (size_t i = 0; i < nknown; i++) {
    const char *k = *(const char *const *)((const char *)known + i * stride);
    int d = distance(name, k);
    if (d < bestd) bestd = d, best = k;
  }
  char msg[300];
  if (best) snprintf(msg, sizeof msg, "unknown key '%s' (did you mean '%s'?)", name, best);
  else snprintf(msg, sizeof msg, "unknown key '%s'", name);
  return bad(x, name, "%s", msg);
}

/* The text of a scalar value (string, number), owned; NULL if it is neither. */
static const char *scalar(lua_State *L, int idx, th_config *c) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return own(c, s, n);
  }
  if (lua_type(L, idx) == LUA_TNUMBER) {
    char t[64];
    if (lua_isinteger(L, idx)) snprintf(t, sizeof t, "%lld", (long long)lua_tointeger(L, idx));
    else snprintf(t, sizeof t, "%.17g", (double)lua_tonumber(L, idx));
    return own(c, t, strlen(t));
  }
  return NULL;
}

/* "30s", "1.5", 2 -> milliseconds; 0 on error. */
static unsigned millis(const char *s) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || v <= 0) return 0;
  if (strcmp(end, "ms") == 0) v /= 1000;
  else if (strcmp(end, "m") == 0) v *= 60;
  else if (*end != '\0' && strcmp(end, "s") != 0) return 0;
  return v * 1000 > 3600000 ? 0 : (unsigned)(v * 1000);
}

/* An output given as a table: { "SPEC", key = value, ... } at the top of the stack. */
static int output_table(const ctx *x, lua_State *L) {
  th_config *c = x->c;
  lua_rawgeti(L, -1, 1);
  const char *spec = lua_type(L, -1) == LUA_TSTRING ? scalar(L, -1, c) : NULL;
  lua_pop(L, 1);
  if (spec == NULL) return bad(x, "outputs", "%s", "an output given as a table needs its sink first: { \"http://...\", ... }");
  th_output_conf *oc = realloc(c->outputs, (size_t)(c->noutputs + 1) * sizeof *oc);
  if (oc == NULL) return bad(x, NULL, "%s", "out of memory");
  c->outputs = oc;
  th_output_conf *o = &c->outputs[c->noutputs++];
  memset(o, 0, sizeof *o);
  o->spec = spec;
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    if (lua_type(L, -2) == LUA_TNUMBER && lua_tointeger(L, -2) == 1) {
      lua_pop(L, 1);
      continue;
    }
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
    int known = 0;
    for (int i = 0; OUTPUT_KEYS[i]; i++) known |= strcmp(k, OUTPUT_KEYS[i]) == 0;
    if (!known) {
      size_t n = 0;
      while (OUTPUT_KEYS[n]) n++;
      return unknown(x, k, OUTPUT_KEYS, n, sizeof OUTPUT_KEYS[0]);
    }
    if (strcmp(k, "headers") == 0) {
      if (!lua_istable(L, -1)) return bad(x, k, "%s", "headers: a list of \"Name: value\", or a table of name = value");
      int n = 0;
      const char **h = NULL;
      lua_pushnil(L);
      while (lua_next(L, -2) != 0) {
        const char *line = NULL;
        if (lua_type(L, -2) == LUA_TSTRING) {  /* name = value */
          size_t kn, vn;
          const char *kk = lua_tolstring(L, -2, &kn);
          const char *vv = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vn) : NULL;
          if (vv) {
            char *t = malloc(kn + vn + 3);
            if (t) {
              snprintf(t, kn + vn + 3, "%s: %s", kk, vv);
              line = own(c, t, strlen(t));
              free(t);
            }
          }
        } else {
          line = lua_type(L, -1) == LUA_TSTRING ? scalar(L, -1, c) : NULL;
        }
        lua_pop(L, 1);
        if (line == NULL || strchr(line, '\n') || strchr(line, '\r'))
          return bad(x, k, "%s", "headers: each a string \"Name: value\" on one line");
        const char **nh = realloc(h, (size_t)(n + 1) * sizeof *nh);
        if (nh == NULL) {
          free(h);
          return bad(x, NULL, "%s", "out of memory");
        }
        h = nh;
        h[n++] = line;
        /* the list itself is owned as one more string block */
      }
      char *block = own(c, (const char *)h, (size_t)n * sizeof *h);
      free(h);
      o->opts.headers = (const char *const *)block;
      o->opts.nheaders = n;
    } else if (strcmp(k, "insecure") == 0) {
      o->opts.insecure = lua_toboolean(L, -1);
    } else {
      const char *v = scalar(L, -1, c);
      if (v == NULL) return bad(x, k, "%s: expected a string or a number", k);
      if (strcmp(k, "user") == 0) o->opts.user = v;
      else if (strcmp(k, "password") == 0) o->opts.password = v;
      else if (strcmp(k, "bearer") == 0) o->opts.bearer = v;
      else if (strcmp(k, "ca_file") == 0) o->opts.ca_file = v;
      else if (strcmp(k, "app_name") == 0) o->opts.app_name = v;
      else if (strcmp(k, "timeout") == 0 || strcmp(k, "connect_timeout") == 0) {
        unsigned ms = millis(v);
        if (ms == 0) return bad(x, k, "%s: expected a time such as 30s, 500ms or 2m", k);
        if (k[0] == 't') o->opts.timeout_ms = ms;
        else o->opts.connect_timeout_ms = ms;
      } else if (strcmp(k, "facility") == 0) {
        int f = -1;
        for (int i = 0; FACILITIES[i]; i++)
          if (strcmp(v, FACILITIES[i]) == 0) f = i;
        if (f < 1) return bad(x, k, "facility: expected one of user, daemon, auth, ..., local0 to local7, not '%s'", v);
        o->opts.facility = f;
      }
    }
    lua_pop(L, 1);
  }
  return arg(c, "--output") < 0 || arg(c, spec) < 0 ? bad(x, NULL, "%s", "out of memory") : 0;
}

/* geoip = { asn = "GeoLite2-ASN.mmdb", city = "GeoLite2-City.mmdb" }, at the top of the
 * stack: --geoip-asn and --geoip-city. */
static int geoip(const ctx *x, lua_State *L) {
  static const char *const SUBKEYS[] = {"asn", "city"};
  if (!lua_istable(L, -1))
    return bad(x, "geoip", "%s", "geoip: expected a table { asn = \"...mmdb\", city = \"...mmdb\" }");
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
    int which = strcmp(k, "asn") == 0 ? 0 : strcmp(k, "city") == 0 ? 1 : -1;
    if (which < 0) return unknown(x, k, SUBKEYS, 2, sizeof SUBKEYS[0]);
    const char *v = lua_type(L, -1) == LUA_TSTRING ? scalar(L, -1, x->c) : NULL;
    if (v == NULL) return bad(x, k, "geoip.%s: expected the path of a MaxMind database (.mmdb)", k);
    if (arg(x->c, which == 0 ? "--geoip-asn" : "--geoip-city") < 0 || arg(x->c, v) < 0)
      return bad(x, NULL, "%s", "out of memory");
    lua_pop(L, 1);
  }
  return 0;
}

/* One key and its value, at the top of the stack. */
static int one(const ctx *x, lua_State *L, const char *name) {
  th_config *c = x->c;
  const key *k = NULL;
  for (size_t i = 0; i < NKEYS; i++)
    if (strcmp(KEYS[i].name, name) == 0) k = &KEYS[i];
  if (k == NULL) return unknown(x, name, &KEYS[0].name, NKEYS, sizeof KEYS[0]);
  if (k->run_only && x->replay) return 0;
  int t = lua_type(L, -1);
  if (k->kind == K_BOOL) {
    if (t != LUA_TBOOLEAN) return bad(x, name, "%s: expected true or false", name);
    return lua_toboolean(L, -1) && arg(c, k->flag) < 0 ? bad(x, NULL, "%s", "out of memory") : 0;
  }
  if (k->kind == K_GEOIP) return geoip(x, L);
  if (k->kind == K_VALUE) {
    const char *v = scalar(L, -1, c);
    if (v == NULL) return bad(x, name, "%s: expected a string or a number", name);
    return arg(c, k->flag) < 0 || arg(c, v) < 0 ? bad(x, NULL, "%s", "out of memory") : 0;
  }
  /* lists: one value, or a list of them */
  int n = t == LUA_TTABLE ? (int)lua_rawlen(L, -1) : 1;
  for (int i = 1; i <= n; i++) {
    if (t == LUA_TTABLE) lua_rawgeti(L, -1, i);
    else lua_pushvalue(L, -1);
    int rc = 0;
    if (k->kind == K_OUTPUTS && lua_istable(L, -1)) {
      rc = output_table(x, L);
    } else {
      const char *v = scalar(L, -1, c);
      if (v == NULL) rc = bad(x, name, "%s: expected strings", name);
      else if ((k->flag && arg(c, k->flag) < 0) || arg(c, v) < 0) rc = bad(x, NULL, "%s", "out of memory");
    }
    lua_pop(L, 1);
    if (rc) return rc;
  }
  return 0;
}

static void too_long(lua_State *L, lua_Debug *ar) {
  (void)ar;
  luaL_error(L, "the configuration runs too long (a loop?)");
}

static int load_file(th_config *c, const char *path, int replay, char **skip, int nskip) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "trailhound: --config %s: %s\n", path, strerror(errno));
    return 2;
  }
  char *text = NULL;
  size_t len = 0, cap = 0, n;
  char chunk[8192];
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (len + n + 1 > cap) {
      cap = (len + n + 1) * 2;
      char *p = realloc(text, cap);
      if (p == NULL) {
        free(text);
        fclose(f);
        return 2;
      }
      text = p;
    }
    memcpy(text + len, chunk, n);
    len += n;
  }
  fclose(f);
  if (text == NULL) text = calloc(1, 1);
  if (text == NULL) return 2;
  text[len] = '\0';
  ctx x = {c, path, text, replay, skip, nskip};
  lua_State *L = luaL_newstate();
  int rc = 0;
  char chunkname[4096 + 2];
  snprintf(chunkname, sizeof chunkname, "@%s", path);
  if (L == NULL) {
    rc = 2;
  } else if (luaL_loadbufferx(L, text, len, chunkname, "t") != LUA_OK) {
    fprintf(stderr, "trailhound: %s\n(see trailhound --help)\n", lua_tostring(L, -1));
    rc = 2;
  } else {
    lua_newtable(L);  /* an empty environment: the file can name values, nothing more */
    lua_setupvalue(L, -2, 1);
    lua_sethook(L, too_long, LUA_MASKCOUNT, 10000000);
    if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
      fprintf(stderr, "trailhound: %s\n(see trailhound --help)\n", lua_tostring(L, -1));
      rc = 2;
    } else if (!lua_istable(L, -1)) {
      rc = bad(&x, NULL, "%s", "the configuration must return a table: return { rules = \"...\", ... }");
    } else {
      /* Keys in a fixed order (KEYS'), so that the options come out the same every time. */
      for (size_t i = 0; i < NKEYS && rc == 0; i++) {
        lua_getfield(L, -1, KEYS[i].name);
        if (!lua_isnil(L, -1) && !skipped(&x, KEYS[i].name)) rc = one(&x, L, KEYS[i].name);
        lua_pop(L, 1);
      }
      lua_pushnil(L);
      while (rc == 0 && lua_next(L, -2) != 0) {  /* anything else is a mistake */
        const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "(a key that is not a name)";
        int found = 0;
        for (size_t i = 0; i < NKEYS; i++) found |= strcmp(KEYS[i].name, name) == 0;
        if (!found) rc = one(&x, L, name);
        lua_pop(L, 1);
      }
    }
  }
  if (L) lua_close(L);
  free(text);
  return rc;
}

/* -o key=value: as the file would have key = "value". */
static int override(th_config *c, const char *kv, int replay) {
  const char *eq = strchr(kv, '=');
  ctx x = {c, "-o", NULL, replay, NULL, 0};
  if (eq == NULL || eq == kv) return bad(&x, NULL, "expected key=value, not '%s'", kv);
  char name[64];
  size_t n = (size_t)(eq - kv);
  if (n >= sizeof name) return bad(&x, NULL, "unknown key in '%s'", kv);
  memcpy(name, kv, n);
  name[n] = '\0';
  lua_State *L = luaL_newstate();
  if (L == NULL) return 2;
  const key *k = NULL;
  for (size_t i = 0; i < NKEYS; i++)
    if (strcmp(KEYS[i].name, name) == 0) k = &KEYS[i];
  if (k && k->kind == K_BOOL && (strcmp(eq + 1, "true") == 0 || strcmp(eq + 1, "false") == 0))
    lua_pushboolean(L, eq[1] == 't');
  else
    lua_pushstring(L, eq + 1);
  int rc = one(&x, L, name);
  lua_close(L);
  return rc;
}

int th_config_apply(th_config *c, int argc, char **argv, int *out_argc, char ***out_argv) {
  memset(c, 0, sizeof *c);
  *out_argc = argc;
  *out_argv = argv;
  if (argc < 2) return 0;
  int replay = strcmp(argv[1], "replay") == 0;
  const char *file = NULL;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "--config") == 0) {
      if (i + 1 >= argc) {
        fputs("trailhound: --config needs a value\n(see trailhound --help)\n", stderr);
        return 2;
      }
      if (file) {
        fputs("trailhound: --config given twice\n(see trailhound --help)\n", stderr);
        return 2;
      }
      file = argv[++i];
    }
  }
  if (file) {  /* -o key=value sets the key instead of the file */
    char **skip = calloc((size_t)argc, sizeof *skip);
    int nskip = 0;
    if (skip == NULL) return 2;
    for (int i = 2; i + 1 < argc && strcmp(argv[i], "--") != 0; i++)
      if (strcmp(argv[i], "-o") == 0) skip[nskip++] = argv[++i];
    c->path = file;
    int rc = load_file(c, file, replay, skip, nskip);
    free(skip);
    if (rc) return rc;
  }
  int any_o = 0;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "-o") == 0) {
      if (i + 1 >= argc) {
        fputs("trailhound: -o needs key=value\n(see trailhound --help)\n", stderr);
        return 2;
      }
      int rc = override(c, argv[++i], replay);
      if (rc) return rc;
      any_o = 1;
    } else if (strcmp(argv[i], "--config") == 0) {
      i++;
    }
  }
  if (!file && !any_o) return 0;
  /* argv[0], the command, the file's and -o's options, then the rest of the command line. */
  char **v = calloc((size_t)(argc + c->nargs + 1), sizeof *v);
  if (v == NULL) return 2;
  int n = 0;
  v[n++] = argv[0];
  v[n++] = argv[1];
  for (int i = 0; i < c->nargs; i++) v[n++] = c->args[i];
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      while (i < argc) v[n++] = argv[i++];
      break;
    }
    if (strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-o") == 0) {
      i++;
      continue;
    }
    v[n++] = argv[i];
  }
  *out_argc = n;
  *out_argv = v;
  c->made_argv = 1;
  return 0;
}

const th_sink_opts *th_config_output(const th_config *c, const char *spec) {
  for (int i = 0; i < c->noutputs; i++)
    if (strcmp(c->outputs[i].spec, spec) == 0) return &c->outputs[i].opts;
  return NULL;
}

void th_config_free(th_config *c, char **out_argv) {
  for (int i = 0; i < c->nowned; i++) free(c->owned[i]);
  free(c->owned);
  free(c->args);
  free(c->outputs);
  if (c->made_argv) free(out_argv);
  memset(c, 0, sizeof *c);
}
