#!/usr/bin/python3
"""Bookinfo-style sample apps for ambit's demo and e2e tests (standard library only).

    bookinfo.py productpage | details | reviews | ratings      (listens on $PORT, default 9080)

Behaves like the Bookinfo sample users know from Istio's tutorials:
  productpage  GET /productpage renders HTML from details + reviews; POST /login (form user=...)
               sets a session cookie and every backend call then carries `end-user: <user>`;
               GET /logout; GET /api/v1/products[/<id>[/reviews|/ratings]]; GET /static/*; /health.
               Reviews are fetched with a 3 s timeout and one retry (the original's budget); on
               failure the page says "Error fetching product reviews".
  details      GET /details/<id> -> JSON
  reviews      GET /reviews/<id> -> JSON; $SERVICE_VERSION v1 shows no stars, v2 black, v3 red
               (v2/v3 call ratings, forwarding end-user and trace headers; if ratings fails the
               review says "Ratings service is currently unavailable").
  ratings      GET /ratings/<id> -> JSON; FLAKY_PERCENT=N makes N % of calls answer 503
               (for retry demos).

Service addresses come from $DETAILS_HOSTNAME, $REVIEWS_HOSTNAME, $RATINGS_HOSTNAME (defaults
details, reviews, ratings) on port $SERVICES_PORT (9080) — resolved by cluster DNS.
"""
import html
import http.client
import http.cookies
import json
import os
import random
import socket
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "9080"))
VERSION = os.environ.get("SERVICE_VERSION", "v1")
SERVICES_PORT = int(os.environ.get("SERVICES_PORT", "9080"))
DETAILS = os.environ.get("DETAILS_HOSTNAME", "details")
REVIEWS = os.environ.get("REVIEWS_HOSTNAME", "reviews")
RATINGS = os.environ.get("RATINGS_HOSTNAME", "ratings")
FLAKY_PERCENT = float(os.environ.get("FLAKY_PERCENT", "0"))
POD = os.environ.get("POD_NAME", socket.gethostname())

# headers propagated to backends (tracing + the user for header-based routing)
FORWARD = ["end-user", "x-request-id", "traceparent", "tracestate", "b3", "x-b3-traceid",
           "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "user-agent"]

PRODUCT = {"id": 0, "title": "The Comedy of Errors",
           "descriptionHtml": "<a href=\"https://en.wikipedia.org/wiki/The_Comedy_of_Errors\">"
                              "Wikipedia Summary</a>: The Comedy of Errors is one of William "
                              "Shakespeare's early plays."}


def call(host, path, headers, timeout):
    """GET http://host:SERVICES_PORT/path; returns (status, parsed JSON or None)."""
    conn = http.client.HTTPConnection(host, SERVICES_PORT, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        try:
            return resp.status, json.loads(body)
        except ValueError:
            return resp.status, None
    finally:
        conn.close()


class Handler(BaseHTTPRequestHandler):
    server_version = "bookinfo/" + VERSION
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s %s\n" % (time.strftime("%H:%M:%S"), ROLE, fmt % args))

    def fwd_headers(self, user=None):
        h = {k: v for k in FORWARD if (v := self.headers.get(k))}
        if user:
            h["end-user"] = user
        return h

    def send(self, status, body, ctype="application/json", extra=None):
        if not isinstance(body, bytes):
            body = (json.dumps(body) if ctype == "application/json" else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    # ------------------------------------------------------------------ GET dispatch
    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/health":
            return self.send(200, {"status": ROLE + " is healthy"})
        return ROUTES[ROLE](self, path)

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        if ROLE == "productpage" and path == "/login":
            n = int(self.headers.get("Content-Length", "0") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(min(n, 4096)).decode(errors="replace"))
            user = (form.get("username") or form.get("user") or [""])[0][:64]
            cookie = "session=%s; Path=/" % urllib.parse.quote(user)
            return self.send(302, b"", "text/plain", {"Location": "/productpage",
                                                       "Set-Cookie": cookie})
        return self.send(405, {"error": "method not allowed"})

    def do_DELETE(self):
        return self.send(200, {"deleted": self.path}) if ROLE == "productpage" else \
            self.send(405, {"error": "method not allowed"})


def user_of(h):
    c = http.cookies.SimpleCookie(h.headers.get("Cookie", ""))
    return urllib.parse.unquote(c["session"].value) if "session" in c else None


def get_reviews(h, user):
    """3 s timeout per try, one retry, like the original productpage."""
    for attempt in range(2):
        try:
            status, body = call(REVIEWS, "/reviews/0", h.fwd_headers(user), 3.0)
            if status == 200 and body is not None:
                return body
        except (OSError, http.client.HTTPException):
            pass
    return None


def productpage(h, path):
    user = user_of(h)
    if path in ("/", "/index.html"):
        return h.send(200, "<html><body><a href=\"/productpage\">Bookinfo</a></body></html>",
                      "text/html")
    if path == "/logout":
        return h.send(302, b"", "text/plain", {"Location": "/productpage",
                                               "Set-Cookie": "session=; Path=/; Max-Age=0"})
    if path.startswith("/static/"):
        return h.send(200, "/* bookinfo static */", "text/css")
    if path.startswith("/api/v1/products"):
        parts = [p for p in path.split("/") if p][3:]
        if not parts:
            return h.send(200, [{"id": 0, "title": PRODUCT["title"]}])
        if len(parts) == 1:
            return h.send(200, PRODUCT)
        backend = {"reviews": (REVIEWS, "/reviews/0"), "ratings": (RATINGS, "/ratings/0")}
        if parts[1] in backend:
            try:
                st, body = call(*backend[parts[1]], h.fwd_headers(user), 3.0)
                return h.send(st, body)
            except (OSError, http.client.HTTPException) as e:
                return h.send(503, {"error": str(e)})
        return h.send(404, {"error": "not found"})
    if path != "/productpage":
        return h.send(404, {"error": "not found"})

    details_html = "<p>Sorry, product details are currently unavailable.</p>"
    try:
        st, d = call(DETAILS, "/details/0", h.fwd_headers(user), 3.0)
        if st == 200 and d:
            details_html = "<dl>" + "".join(
                "<dt>%s</dt><dd>%s</dd>" % (html.escape(k), html.escape(str(v)))
                for k, v in d.items() if k != "id") + "</dl>"
    except (OSError, http.client.HTTPException):
        pass
    reviews = get_reviews(h, user)
    if reviews is None:
        reviews_html = "<h3>Error fetching product reviews!</h3>" \
                       "<p>Sorry, product reviews are currently unavailable for this book.</p>"
    else:
        out = []
        for r in reviews.get("reviews", []):
            line = "<blockquote><p>%s</p><small>%s</small>" % (
                html.escape(r["text"]), html.escape(r["reviewer"]))
            rating = r.get("rating")
            if rating and "error" in rating:
                line += "<p><i>%s</i></p>" % html.escape(rating["error"])
            elif rating:
                line += "<font color=\"%s\">%s</font>" % (
                    html.escape(rating["color"]), "&#9733;" * int(rating["stars"]))
            out.append(line + "</blockquote>")
        reviews_html = "".join(out) + "<p>Reviews served by: <u>%s</u></p>" % html.escape(
            reviews.get("podname", "?"))
    who = "<p>Signed in as %s</p>" % html.escape(user) if user else "<p>Not signed in</p>"
    page = ("<html><head><title>Simple Bookstore App</title></head><body>"
            "<h1>%s</h1>%s<p>%s</p><h2>Book Details</h2>%s<h2>Book Reviews</h2>%s</body></html>"
            % (html.escape(PRODUCT["title"]), who, PRODUCT["descriptionHtml"], details_html,
               reviews_html))
    return h.send(200, page, "text/html; charset=utf-8")


def details(h, path):
    if not path.startswith("/details/"):
        return h.send(404, {"error": "please use /details/<id>"})
    pid = path.split("/")[2] or "0"
    return h.send(200, {"id": int(pid) if pid.isdigit() else 0, "author": "William Shakespeare",
                        "year": 1595, "type": "paperback", "pages": 200,
                        "publisher": "PublisherA", "language": "English",
                        "ISBN-10": "1234567890", "ISBN-13": "123-1234567890"})


def reviews(h, path):
    if not path.startswith("/reviews/"):
        return h.send(404, {"error": "please use /reviews/<id>"})
    texts = [("Reviewer1", "An extremely entertaining play by Shakespeare. The slapstick humour "
                           "is refreshing!"),
             ("Reviewer2", "Absolutely fun and entertaining. The play lacks thematic depth when "
                           "compared to other plays by Shakespeare.")]
    result = {"id": "0", "podname": POD, "clustername": "null",
              "reviews": [{"reviewer": r, "text": t} for r, t in texts]}
    if VERSION in ("v2", "v3"):
        color = "black" if VERSION == "v2" else "red"
        try:
            st, body = call(RATINGS, "/ratings/0", h.fwd_headers(), 10.0)
            ok = st == 200 and body and "ratings" in body
        except (OSError, http.client.HTTPException):
            ok = False
        for i, rv in enumerate(result["reviews"]):
            if ok:
                stars = body["ratings"].get("Reviewer%d" % (i + 1), 0)
                rv["rating"] = {"stars": stars, "color": color}
            else:
                rv["rating"] = {"error": "Ratings service is currently unavailable"}
    return h.send(200, result)


def ratings(h, path):
    if not path.startswith("/ratings/"):
        return h.send(404, {"error": "please use /ratings/<id>"})
    if FLAKY_PERCENT and random.uniform(0, 100) < FLAKY_PERCENT:
        return h.send(503, {"error": "flaky ratings"})
    return h.send(200, {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}})


ROUTES = {"productpage": productpage, "details": details, "reviews": reviews, "ratings": ratings}


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ROUTES:
        sys.exit("usage: bookinfo.py productpage|details|reviews|ratings")
    ROLE = sys.argv[1]
    srv = ThreadingHTTPServer((os.environ.get("BIND_ADDR", "0.0.0.0"), PORT), Handler)
    srv.daemon_threads = True
    sys.stderr.write("bookinfo %s %s listening on :%d\n" % (ROLE, VERSION, PORT))
    srv.serve_forever()
