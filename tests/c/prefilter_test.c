/* prefilter_test.c: the raw-bytes prefilter (host/prefilter.c) on the records
 * it must pass and the ones it may skip: the Bedrock rule's requirements, JSON
 * escapes, literals that overlap, several rules, rules that require nothing,
 * which rules a record could concern (th_prefilter_rules), long records read
 * in pieces, text that is not JSON. Prints TAP. */
#include <string.h>

#include "prefilter.h"
#include "proto.h"
#include "tap.h"

/* A list of strings cut by ',' (u32 m, m x str), flags in m. */
static void put_list(th_buf *b, const char *p, size_t n, uint32_t flags) {
  uint32_t na = 1;
  for (size_t k = 0; k < n; k++) na += p[k] == ',';
  th_buf_u32(b, na | flags);
  const char *q = p;
  for (uint32_t a = 0; a < na; a++) {
    const char *comma = memchr(q, ',', n - (size_t)(q - p));
    size_t alen = comma ? (size_t)(comma - q) : n - (size_t)(q - p);
    th_buf_str(b, q, alen);
    q += alen + 1;
  }
}

/* One rule's requirements from a spec: clauses cut by '|', literals by ','; a clause
 * that starts with '~' is flagged TH_PF_FOLD (its literals in any ASCII case). After a
 * '#', conditions on raw fields cut by ';': "path=a,b" (one of these) or "path!=a,b"
 * (none of these). */
static void rule_blob(th_buf *b, const char *spec) {
  th_buf_init(b);
  const char *hash = strchr(spec, '#');
  size_t slen = hash ? (size_t)(hash - spec) : strlen(spec);
  uint32_t nc = 0;
  if (slen) {
    nc = 1;
    for (size_t k = 0; k < slen; k++) nc += spec[k] == '|';
  }
  th_buf_u32(b, nc);
  const char *p = spec;
  for (uint32_t i = 0; i < nc; i++) {
    uint32_t fold = 0;
    if (*p == '~') {
      fold = TH_PF_FOLD;
      p++;
    }
    const char *end = memchr(p, '|', slen - (size_t)(p - spec));
    size_t clen = end ? (size_t)(end - p) : slen - (size_t)(p - spec);
    put_list(b, p, clen, fold);
    p += clen + 1;
  }
  uint32_t nf = 0;
  if (hash && hash[1]) {
    nf = 1;
    for (const char *c = hash + 1; *c; c++) nf += *c == ';';
  }
  th_buf_u32(b, nf);
  p = hash ? hash + 1 : NULL;
  for (uint32_t i = 0; i < nf; i++) {
    const char *end = strchr(p, ';');
    size_t flen = end ? (size_t)(end - p) : strlen(p);
    const char *eq = memchr(p, '=', flen);
    int exclude = eq > p && eq[-1] == '!';
    th_buf_str(b, p, (size_t)(eq - p) - (size_t)exclude);
    th_buf_u8(b, (uint8_t)exclude);
    put_list(b, eq + 1, flen - (size_t)(eq + 1 - p), 0);
    p += flen + 1;
  }
}

/* A prefilter of up to 4 rules given as specs (NULL ends the list). */
static th_prefilter *make(const char *a, const char *b, const char *c, const char *d) {
  const char *specs[4] = {a, b, c, d};
  th_buf bufs[4];
  th_pf_rule rules[4];
  size_t n = 0;
  for (; n < 4 && specs[n]; n++) {
    rule_blob(&bufs[n], specs[n]);
    rules[n] = (th_pf_rule){bufs[n].p, bufs[n].len};
  }
  th_prefilter *pf = th_prefilter_new(rules, n, NULL);
  for (size_t i = 0; i < n; i++) th_buf_free(&bufs[i]);
  return pf;
}

/* s without its NUL at p. */
static void put(char *p, const char *s) { memcpy(p, s, strlen(s)); }

static int pass(th_prefilter *pf, const char *rec) { return th_prefilter_pass(pf, rec, strlen(rec)); }

static uint8_t set[8];
static int rules(th_prefilter *pf, const char *rec) {
  memset(set, 0xaa, sizeof set);
  return th_prefilter_rules(pf, rec, strlen(rec), set);
}

#define BEDROCK "bedrock.amazonaws.com|PutResourcePolicy,DeleteResourcePolicy|AccessDenied,AccessDeniedException"
#define DENIED                                                                                    \
  "{\"eventSource\":\"bedrock.amazonaws.com\",\"eventName\":\"PutResourcePolicy\",\"errorCode\":\"AccessDenied\"}"

int main(void) {
  th_prefilter *pf = make(BEDROCK, NULL, NULL, NULL);
  CHECK(pf != NULL, "a prefilter of the Bedrock rule is built");
  CHECK(pass(pf, "{\"eventSource\":\"bedrock.amazonaws.com\",\"eventName\":\"PutResourcePolicy\","
                 "\"errorCode\":\"AccessDenied\"}"), "a denied PutResourcePolicy passes");
  CHECK(pass(pf, "{\"eventSource\":\"bedrock.amazonaws.com\",\"eventName\":\"DeleteResourcePolicy\","
                 "\"errorCode\":\"AccessDeniedException\"}"), "the other action, the other code pass");
  CHECK(!pass(pf, "{\"eventSource\":\"bedrock.amazonaws.com\",\"eventName\":\"PutResourcePolicy\"}"),
        "a successful call (no error code) is skipped");
  CHECK(!pass(pf, "{\"eventSource\":\"s3.amazonaws.com\",\"eventName\":\"PutBucketPolicy\","
                  "\"errorCode\":\"AccessDenied\"}"), "another service is skipped");
  CHECK(pass(pf, "{\"eventSource\":\"b\\u0065drock.amazonaws.com\",\"eventName\":\"Put\\u0052esourcePolicy\","
                 "\"errorCode\":\"AccessDenied\"}"), "\\u escapes are undone before looking");
  CHECK(pass(pf, "  {\"event\":{\"provider\":\"bedrock.amazonaws.com\",\"action\":\"PutResourcePolicy\"},"
                 "\"aws.cloudtrail\":{\"error_code\":\"AccessDenied\"}}\r\n"),
        "an ECS document, nested and dotted keys, spaces around it");
  CHECK(pass(pf, "{\"errorMessage\":\"bedrock.amazonaws.com PutResourcePolicy AccessDenied\"}"),
        "the values inside another field pass (a speed-up may pass too much, never too little)");
  CHECK(pass(pf, "{\"eventSource\":\"bedrock.amazonaws.com\""), "a truncated record passes, to be reported");
  CHECK(pass(pf, "not json at all"), "text that is not JSON passes, to be reported");
  CHECK(!pass(pf, "{\"eventSource\":\"Bedrock.amazonaws.com\",\"eventName\":\"PutResourcePolicy\","
                  "\"errorCode\":\"AccessDenied\"}"), "values are case-sensitive, as KQL's keyword match");
  CHECK(!th_prefilter_passes_all(pf), "it does not pass everything");
  th_prefilter_free(pf);

  pf = make("arn:aws:iam::123456789012:role/admin", NULL, NULL, NULL);
  CHECK(pass(pf, "{\"arn\":\"arn:aws:iam::123456789012:role\\/admin\"}"), "\\/ is /");
  CHECK(pass(pf, "{\"x\":\"\\ud83d\\ude00 arn:aws:iam::123456789012:role/admin\"}"),
        "a surrogate pair before the value");
  CHECK(pass(pf, "[{\"x\":1}]"), "an array passes: the worker takes it apart (or reports it)");
  CHECK(!pass(pf, "{\"arn\":\"arn:aws:iam::123456789012:role/admi\"}"), "a prefix of the value is skipped");
  th_prefilter_free(pf);

  pf = make("he", "she|his,hers", "ushers|zzz", NULL);
  CHECK(pass(pf, "{\"a\":\"ushe\"}"), "a literal ending inside another (she, he) is found");
  th_prefilter_free(pf);
  pf = make("she|hers", "zz", NULL, NULL);
  CHECK(pass(pf, "{\"a\":\"ushers\"}"), "overlapping literals are both found (she, hers)");
  CHECK(!pass(pf, "{\"a\":\"usher\"}"), "one of two clauses is not enough");
  th_prefilter_free(pf);

  pf = make(BEDROCK, "", NULL, NULL);
  CHECK(pf && !th_prefilter_passes_all(pf), "a rule that requires nothing: the others are still looked for");
  CHECK(pass(pf, "{\"a\":1}"), "... and every record passes, even one with none of the values");
  CHECK(rules(pf, "{\"a\":1}") == 1 && set[0] == 2, "... meeting that rule alone");
  CHECK(rules(pf, DENIED) == 1 && set[0] == 3, "... or both");
  th_prefilter_free(pf);

  pf = make(BEDROCK, "~s3.amazonaws.com|~ListBuckets", "sts.amazonaws.com|GetCallerIdentity", NULL);
  CHECK(rules(pf, DENIED) == 1 && set[0] == 1, "rules: the one whose every clause a record meets");
  CHECK(rules(pf, "{\"eventSource\":\"S3.amazonaws.com\",\"eventName\":\"ListBuckets\"}") == 1 && set[0] == 2,
        "rules: a folded rule's, in another case");
  CHECK(rules(pf, "{\"eventSource\":\"sts.amazonaws.com\",\"eventName\":\"GetCallerIdentity\","
                  "\"x\":\"s3.amazonaws.com ListBuckets\"}") == 1 && set[0] == 6,
        "rules: two at once, the values in any field");
  CHECK(rules(pf, "{\"eventSource\":\"st\\u0073.amazonaws.com\",\"eventName\":\"GetCallerIdentity\"}") == 1 &&
        set[0] == 4, "rules: escapes undone");
  CHECK(rules(pf, "{\"eventSource\":\"sts.amazonaws.com\"}") == 0 && set[0] == 0, "rules: none, and no bit");
  CHECK(rules(pf, "[{\"eventSource\":\"sts.amazonaws.com\"}]") == 1 && (set[0] & 7) == 7,
        "rules: a record that is not an object meets every rule, for the worker to take apart");
  th_prefilter_free(pf);
  pf = make(BEDROCK, "sts.amazonaws.com|GetCallerIdentity", NULL, NULL);  /* few literals: memmem first */
  CHECK(rules(pf, "{\"eventSource\":\"ec2.amazonaws.com\"}") == 0 && set[0] == 0, "rules: memmem finds none");
  CHECK(rules(pf, DENIED) == 1 && set[0] == 1, "rules: ... or the one it finds");
  th_prefilter_free(pf);

  /* A long record is read in pieces, cut at quotes (scan): each literal wherever it lies. */
  pf = make("GetSecretValue|~secretsmanager.amazonaws.com", "needle\"in", NULL, NULL);
  char big[2048];
  size_t missed = 0;
  for (size_t at = 1; at < 1900; at += 37) {
    if (at + 6 + 21 > 1000 && at + 6 < 1030) continue;  /* the other literal's place */
    memset(big, ' ', sizeof big);
    put(big, "{\"a\":\"");
    memcpy(big + sizeof big - 3, "\"}", 3);  /* the NUL too */
    put(big + at + 6, "\"GetSecret\\u0056alue\"");
    put(big + 1000, "\"SecretsManager.amazonaws.com\"");
    if (!pass(pf, big)) missed = at;
  }
  CHECK(missed == 0, "a long record: a literal (escaped) anywhere, the other near the middle, is found");
  memset(big, ' ', sizeof big);
  memcpy(big, "{", 1);
  memcpy(big + sizeof big - 2, "}", 2);
  for (size_t q = 100; q < 2000; q += 100) big[q] = '"';
  put(big + 1100 - 6, "needle\"in");  /* across the quote a piece starts at (the first past the middle) */
  CHECK(pass(pf, big), "a long record: a literal across the quote a piece starts at");
  th_prefilter_free(pf);

  pf = make("x,", NULL, NULL, NULL);
  CHECK(pf && th_prefilter_passes_all(pf), "a clause with \"\" is met by every record");
  th_prefilter_free(pf);

  pf = make(NULL, NULL, NULL, NULL);
  CHECK(pf && !pass(pf, "{\"a\":1}"), "no rules: no record could match");
  CHECK(pass(pf, "{\"a\":"), "no rules: a broken record still passes, to be reported");
  th_prefilter_free(pf);

  /* Sigma's clauses: ASCII case aside. */
  pf = make("~s3.amazonaws.com|~ListBuckets", NULL, NULL, NULL);
  CHECK(pass(pf, "{\"eventSource\":\"S3.AmazonAWS.com\",\"eventName\":\"listbuckets\"}"),
        "a folded clause is met in any ASCII case");
  CHECK(pass(pf, "{\"eventSource\":\"s3.amazonaws.com\",\"eventName\":\"List\\u0042UCKETS\"}"),
        "... escapes undone first");
  CHECK(!pass(pf, "{\"eventSource\":\"s3.amazonaws.com\",\"eventName\":\"ListObjects\"}"),
        "a record without one of its values is skipped");
  th_prefilter_free(pf);
  pf = make(BEDROCK, "~s3.amazonaws.com|~ListBuckets", NULL, NULL);
  CHECK(pass(pf, "{\"eventSource\":\"bedrock.amazonaws.com\",\"eventName\":\"PutResourcePolicy\","
                 "\"errorCode\":\"AccessDenied\"}"), "beside a folded rule, an exact rule's record passes");
  CHECK(pass(pf, "{\"eventSource\":\"Bedrock.amazonaws.com\",\"eventName\":\"PutResourcePolicy\","
                 "\"errorCode\":\"AccessDenied\"}"), "... and one in another case too (more, never less)");
  CHECK(!pass(pf, "{\"eventSource\":\"ec2.amazonaws.com\",\"eventName\":\"ListBuckets\"}"),
        "a record neither rule could match is skipped");
  th_prefilter_free(pf);
  pf = make("Abc|q", "~aBC|zzz", NULL, NULL);
  CHECK(pass(pf, "{\"x\":\"Abc q\"}"), "literals equal but for case are one: the exact one is found");
  CHECK(pass(pf, "{\"x\":\"abc zZz\"}"), "... and the folded one in any case");
  CHECK(!pass(pf, "{\"x\":\"abc\"}"), "... and each rule's other clause still counts");
  th_prefilter_free(pf);

  char out[64];
  const char *esc = "a\\\"b\\\\c\\/d\\n\\u00e9\\ud83d\\ude00\\x\\u12";
  size_t n = th_json_unescape(esc, strlen(esc), out);
  CHECK(n == strlen("a\"b\\c/d\n\xc3\xa9\xf0\x9f\x98\x80\\x\\u12") &&
        memcmp(out, "a\"b\\c/d\n\xc3\xa9\xf0\x9f\x98\x80\\x\\u12", n) == 0,
        "unescape: quotes, backslashes, slashes, controls, BMP and astral code points, invalid escapes kept");

  /* Conditions on raw fields: a rule for iam's CreateUser, not by an assumed role or a service. */
  pf = make("iam.amazonaws.com|CreateUser#eventName=CreateUser;userIdentity.type!=AssumedRole,AWSService",
            "sts.amazonaws.com#eventSource=sts.amazonaws.com", NULL, NULL);
  CHECK(pf != NULL, "a prefilter with conditions on fields is built");
#define IAM "{\"eventSource\":\"iam.amazonaws.com\",\"eventName\":\"CreateUser\","
  CHECK(pass(pf, IAM "\"userIdentity\":{\"type\":\"IAMUser\"}}"), "fields: an IAM user's CreateUser passes");
  CHECK(!pass(pf, IAM "\"userIdentity\":{\"type\":\"AssumedRole\"}}"), "... an assumed role's is skipped");
  CHECK(!pass(pf, IAM "\"userIdentity\":{\"type\":\"AWSService\",\"x\":[1,{\"y\":null}]}}"),
        "... a service's too, whatever else its identity holds");
  CHECK(!pass(pf, IAM "\"userIdentity\":{\"type\":\"Assumed\\u0052ole\"}}"), "... its type written with an escape too");
  CHECK(!pass(pf, IAM "\"user\\u0049dentity\":{\"type\":\"AssumedRole\"}}"), "... and a key written with one");
  CHECK(pass(pf, IAM "\"userIdentity\":{\"type\":\"AssumedRole\"},\"userIdentity\":{\"arn\":\"x\"}}"),
        "... the last of two keys counts, as in the decoded table (no type: it passes)");
  CHECK(!pass(pf, IAM "\"userIdentity\":{\"type\":\"IAMUser\",\"type\":\"AssumedRole\"}}"),
        "... inside an object too");
  CHECK(pass(pf, IAM "\"userIdentity\":{\"type\":[\"AssumedRole\"]}}"), "... a type that is no string passes");
  CHECK(pass(pf, IAM "\"userIdentity\":\"AssumedRole\"}"), "... an identity that is no object passes");
  CHECK(pass(pf, IAM "\"x\":{\"type\":\"AssumedRole\"}}"), "... the value under another key counts for nothing");
  CHECK(pass(pf, IAM "\"userIdentity\":{\"type\":\"AssumedRole\"}"),
        "... text that is no valid JSON is let through, for the worker to report");
  CHECK(pass(pf, IAM "\"userIdentity\":{\"type\":\"AssumedRole\",}}"), "... a trailing comma too");
  CHECK(pass(pf, IAM "\"userIdentity\":{\"type\":\"AssumedRole\"},\"n\":01}"), "... a number JSON refuses too");
  CHECK(pass(pf, IAM "\"userIdentity\":{\"type\":\"AssumedRole\\ud800\"}}"), "... a lone surrogate too");
  CHECK(!pass(pf, "{\"eventName\":\"CreateUserX\",\"eventSource\":\"iam.amazonaws.com\",\"m\":\"CreateUser\"}"),
        "fields: the action's literal elsewhere does not make eventName CreateUser");
  CHECK(!pass(pf, "{\"eventSource\":\"iam.amazonaws.com\",\"m\":\"CreateUser\"}"), "... nor does an absent one");
  CHECK(pass(pf, "{\"eventSource\":\"iam.amazonaws.com\",\"eventName\":7,\"m\":\"CreateUser\"}"),
        "... a number may be anything: it passes");
  CHECK(pass(pf, "{\"event\":{\"provider\":\"iam.amazonaws.com\",\"action\":\"CreateUser\"},"
                 "\"user\":{\"type\":\"AssumedRole\"},\"userIdentity\":{\"type\":\"AssumedRole\"}}"),
        "... an ECS document (no eventSource, no eventName string) is the worker's to read: it passes");
  CHECK(rules(pf, "{\"eventSource\":\"sts.amazonaws.com\",\"eventName\":\"CreateUser\"}") == 1 && set[0] == 2,
        "fields: only the rule whose conditions hold is in the set");
  CHECK(rules(pf, "{\"eventSource\":\"sts.amazonaws.com \",\"eventName\":\"CreateUser\"}") == 0 && set[0] == 0,
        "... and none when no rule's do");
  th_prefilter_free(pf);

  th_rawpath paths[3];
  th_rawval got[3];
  CHECK(th_rawpath_parse("a.b", 3, &paths[0]) == 0 && paths[0].nseg == 2, "paths: a.b is two keys");
  CHECK(th_rawpath_parse("a..b", 4, &paths[1]) < 0 && th_rawpath_parse("", 0, &paths[1]) < 0 &&
        th_rawpath_parse("a.b.c.d.e", 9, &paths[1]) < 0, "... empty keys and too many are refused");
  th_rawpath_parse("a", 1, &paths[1]);
  th_rawpath_parse("c", 1, &paths[2]);
  const char *doc = " {\"a\" : { \"b\" : \"x\\ny\" } , \"c\":-1.5e+3 }\n";
  CHECK(th_rawfield_read(doc, strlen(doc), paths, 3, got) == 0 && got[0].kind == TH_RAW_STRING && got[0].escaped &&
        got[0].len == 4 && memcmp(got[0].p, "x\\ny", 4) == 0 && got[1].kind == TH_RAW_OTHER &&
        got[2].kind == TH_RAW_OTHER, "read: a string inside an object, an object, a number, spaces anywhere");
  doc = "{\"c\":true,\"a\":[],\"a\":{}}";
  CHECK(th_rawfield_read(doc, strlen(doc), paths, 3, got) == 0 && got[0].kind == TH_RAW_ABSENT &&
        got[1].kind == TH_RAW_OTHER, "read: a later object without the key makes it absent");
  const char *bad[] = {"{\"a\":1}x", "{\"a\":tru}", "{\"a\" 1}", "{\"a\":[1,]}", "{\"a\":\"\\x\"}", "{\"a\":-}",
                       "{\"a\":1.}", "{\"a\":\"\\udc00\"}", "[1]", "{\"a\":\"x}"};
  int refused = 1;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    refused &= th_rawfield_read(bad[i], strlen(bad[i]), paths, 3, got) < 0;
  CHECK(refused, "read: trailing text, bad words, a missing colon, trailing commas, bad escapes and numbers, "
                 "a lone low surrogate, an array, an open string are refused");
  char deep[2 * TH_RAW_MAX_DEPTH + 8];
  size_t dn = 0;
  for (int i = 0; i <= TH_RAW_MAX_DEPTH; i++) deep[dn++] = '[';
  for (int i = 0; i <= TH_RAW_MAX_DEPTH; i++) deep[dn++] = ']';
  char deep_obj[sizeof deep + 8];
  memcpy(deep_obj, "{\"a\":", 5);
  memcpy(deep_obj + 5, deep, dn);
  deep_obj[5 + dn] = '}';
  CHECK(th_rawfield_read(deep_obj, dn + 6, paths, 3, got) < 0, "read: deeper than TH_RAW_MAX_DEPTH is refused");

  th_rawconds *conds = th_rawconds_new(2);
  const char none[4] = {0};
  CHECK(conds && th_rawconds_add(conds, 1, none, 4) < 0 && th_rawconds_add(conds, 0, none, 4) == 0 &&
        th_rawconds_add(conds, 0, none, 4) < 0 && th_rawconds_add(conds, 1, none, 3) < 0,
        "conditions: rules are added in order, once, whole");
  th_rawconds_free(conds);

  th_buf b;
  rule_blob(&b, BEDROCK "#eventName=PutResourcePolicy;userIdentity.type!=AssumedRole");
  CHECK(th_prefilter_check(b.p, b.len) == 0, "check: a list with conditions on fields is well-formed");
  CHECK(th_prefilter_check(b.p, b.len - 1) < 0, "... and one cut short is not");
  th_buf_free(&b);
  rule_blob(&b, BEDROCK);
  CHECK(th_prefilter_check(b.p, b.len) == 0, "check: a well-formed requirement list");
  CHECK(th_prefilter_check(b.p, b.len - 1) < 0, "check: one cut short");
  th_buf_u8(&b, 0);
  CHECK(th_prefilter_check(b.p, b.len) < 0, "check: one with a byte more");
  th_buf_free(&b);
  rule_blob(&b, "~s3.amazonaws.com|ListBuckets");
  CHECK(th_prefilter_check(b.p, b.len) == 0, "check: a folded clause is well-formed");
  th_buf_free(&b);
  return TAP_END();
}
