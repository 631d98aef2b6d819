/*
 * yaml.h — YAML documents to jansson values (libyaml event parser).
 *
 * Supports multi-document streams, anchors and aliases, block and flow collections, literal
 * and folded block scalars, and the YAML 1.2 core schema for plain scalars:
 *   null, ~, (empty)            -> JSON null
 *   true/false (any case form)  -> JSON boolean
 *   decimal, 0x.., 0o.. ints    -> JSON integer (out of range -> error)
 *   decimal floats, exponents   -> JSON real (.inf/.nan -> error: JSON cannot hold them)
 *   anything else               -> JSON string
 * Quoted and block scalars are always strings; the tags !!str !!int !!float !!bool !!null
 * force a type. Mapping keys must be scalars and are used as strings; duplicate keys are errors
 * (as in Kubernetes' strict decoding).
 *
 * Limits (hostile input): nesting depth 100, total produced nodes 1,000,000 (counting alias
 * expansions, so "billion laughs" fails cleanly), input size is the caller's responsibility
 * (dp_yaml_parse_file refuses files over 64 MiB).
 *
 * Errors are written to errbuf as "source:line:column: message" (1-based line and column of
 * the offending token), and the function returns -EINVAL (or -ENOMEM / -EFBIG / -errno).
 */
#ifndef DP_YAML_H
#define DP_YAML_H

#include <stddef.h>

#include <jansson.h>

#define DP_YAML_MAX_DEPTH 100
#define DP_YAML_MAX_NODES 1000000
#define DP_YAML_MAX_FILE  (64u << 20)

/**
 * Parse every document of a YAML stream. Empty documents (a bare `---`, or a document that is
 * only comments) are skipped, as kubectl does.
 *
 * @param source  name used in error messages (a file name, "<stdin>", "values.yaml")
 * @param ret_docs on success, a NEW reference to a JSON array with one element per document
 * @return 0 or -errno; on error errbuf holds the message and *ret_docs is untouched.
 */
int dp_yaml_parse(const char *data, size_t len, const char *source, json_t **ret_docs,
                  char *errbuf, size_t errsz);

/** dp_yaml_parse() of a whole file; `path` is the source name. -errno if it cannot be read. */
int dp_yaml_parse_file(const char *path, json_t **ret_docs, char *errbuf, size_t errsz);

/**
 * Write v as block-style YAML to out (for human output: `-o yaml`). Strings that YAML would
 * read as something else (numbers, booleans, null, leading indicators, ": ", " #", control
 * characters) are double-quoted with JSON escapes, so the output reads back (dp_yaml_parse) as
 * the same JSON. Returns 0 or -EIO.
 */
#include <stdio.h>
int dp_yaml_dump(const json_t *v, FILE *out);

#endif
