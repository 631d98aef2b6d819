/*
 * cni_agent.c — see cni_agent.h. Blocking libcurl: the plugin runs once and has no loop.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cni_agent.h"
#include "curlx.h"
#include "json.h"

json_t *cni_agent_adopt_body(const struct cni_pod *pod)
{
    json_t *o = json_object(), *ips = json_array();
    if (o == NULL || ips == NULL) {
        json_decref(o);
        json_decref(ips);
        return NULL;
    }
    for (size_t i = 0; i < pod->n_ips; i++)
        json_array_append_new(ips, json_string(pod->ips[i]));
    json_object_set_new(o, "uid", json_string(pod->uid ? pod->uid : ""));
    json_object_set_new(o, "namespace", json_string(pod->namespace ? pod->namespace : ""));
    json_object_set_new(o, "name", json_string(pod->name ? pod->name : ""));
    json_object_set_new(o, "containerId", json_string(pod->container_id ? pod->container_id : ""));
    json_object_set_new(o, "netns", json_string(pod->netns ? pod->netns : ""));
    json_object_set_new(o, "ips", ips);
    return o;
}

/* one request; returns 0 and the HTTP status, or -errno */
static int request(const struct cni_conf *conf, const char *method, const char *path,
                   const char *json, struct dp_curl_sink *b, long *ret_status, char *errbuf, size_t errsz)
{
    char url[512], cerr[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL;
    long status = 0;
    int r = 0;

    CURL *c = curl_easy_init();
    if (c == NULL)
        return -ENOMEM;
    snprintf(url, sizeof(url), "http://localhost%s", path);
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, conf->agent_socket);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)conf->agent_timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)conf->agent_timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dp_curl_sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    if (json) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(json));
    }
    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        r = b->err ? b->err : dp_curl_errno(cc);
        /* a missing socket file reads "couldn't connect" too; tell them apart for the message */
        snprintf(errbuf, errsz, "node agent at %s: %s", conf->agent_socket,
                 cerr[0] ? cerr : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    *ret_status = status;
out:
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return r;
}

int cni_agent_parse_adopt_reply(long status, const char *body, size_t len, char *errbuf,
                                size_t errsz)
{
    json_t *j = NULL;
    char perr[128];
    int r;

    if (len > 0)
        dp_json_parse(body, len, CNI_AGENT_MAX_BODY, "agent reply", &j, perr, sizeof(perr));
    const char *msg = json_string_value(json_object_get(j, "error"));
    if (status == 200) {
        if (json_is_true(json_object_get(j, "adopted"))) {
            r = 0;
        } else {
            snprintf(errbuf, errsz, "node agent answered 200 without \"adopted\": true");
            r = -EPROTO;
        }
    } else if (status == 503) {
        snprintf(errbuf, errsz, "node agent cannot adopt the pod now: %.300s",
                 msg ? msg : "(no reason given)");
        r = -EAGAIN;
    } else {
        snprintf(errbuf, errsz, "node agent answered %ld: %.300s", status,
                 msg ? msg : "(no reason given)");
        r = -EPROTO;
    }
    json_decref(j);
    return r;
}

int cni_agent_adopt(const struct cni_conf *conf, const struct cni_pod *pod, char *errbuf,
                    size_t errsz)
{
    struct dp_curl_sink b = {0};
    long status = 0;
    json_t *body = cni_agent_adopt_body(pod);
    char *js = body ? json_dumps(body, JSON_COMPACT) : NULL;
    int r;

    json_decref(body);
    if (js == NULL || dp_buf_new(1024, CNI_AGENT_MAX_BODY, &b.buf) < 0) {
        free(js);
        return -ENOMEM;
    }
    r = request(conf, "POST", "/v1/pods", js, &b, &status, errbuf, errsz);
    free(js);
    if (r >= 0)
        r = cni_agent_parse_adopt_reply(status, dp_buf_head(b.buf), b.buf->len, errbuf, errsz);
    dp_buf_free(b.buf);
    return r;
}

int cni_agent_release(const struct cni_conf *conf, const char *uid, char *errbuf, size_t errsz)
{
    struct dp_curl_sink b = {0};
    char path[160];
    long status = 0;
    int r;

    if (uid == NULL || uid[0] == '\0' || strlen(uid) > 100 || strpbrk(uid, "/?#% "))
        return -EINVAL;
    snprintf(path, sizeof(path), "/v1/pods/%s", uid);
    if (dp_buf_new(1024, CNI_AGENT_MAX_BODY, &b.buf) < 0)
        return -ENOMEM;
    r = request(conf, "DELETE", path, NULL, &b, &status, errbuf, errsz);
    dp_buf_free(b.buf);
    if (r < 0)
        return r;
    if (status == 200 || status == 204 || status == 404)
        return 0;
    snprintf(errbuf, errsz, "node agent answered %ld to DELETE %s", status, path);
    return status == 503 ? -EAGAIN : -EPROTO;
}
