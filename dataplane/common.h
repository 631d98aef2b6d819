/*
 * common.h — small helpers every ambit module uses: assertions for programmer errors, the
 * aborting allocator for tiny hot-path objects, container_of, array size, and an intrusive
 * doubly linked list.
 *
 * Error convention (see docs/internals/PRINCIPLES.md): functions return >= 0 on success and
 * -errno on failure; output parameters are named ret_* and written only on success.
 */
#ifndef DP_COMMON_H
#define DP_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define DP_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define DP_MIN(a, b)     ((a) < (b) ? (a) : (b))
#define DP_MAX(a, b)     ((a) > (b) ? (a) : (b))

#define dp_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/** Abort with file:line when a programmer error is detected. Never use for input checks. */
#define DP_BUG_ON(cond)                                                                            \
    do {                                                                                           \
        if (__builtin_expect(!!(cond), 0))                                                         \
            dp_bug(__FILE__, __LINE__, #cond);                                                     \
    } while (0)

__attribute__((noreturn)) void dp_bug(const char *file, int line, const char *expr);

/**
 * Allocation that aborts on failure. Only for small fixed-size hot-path objects (h2o's
 * h2o_mem_alloc); sizes that come from a peer use checked allocation and return -ENOMEM.
 * Memory is zeroed.
 */
void *dp_xmalloc(size_t size);

/* ------------------------------------------------------------------ intrusive list */

struct dp_list {
    struct dp_list *prev, *next;
};

#define DP_LIST_INIT(name) {&(name), &(name)}

static inline void dp_list_init(struct dp_list *l)
{
    l->prev = l->next = l;
}

static inline int dp_list_empty(const struct dp_list *l)
{
    return l->next == l;
}

static inline int dp_list_linked(const struct dp_list *l)
{
    return l->next != NULL && l->next != l;
}

/** Insert n before head (i.e. at the tail of the list anchored at head). */
static inline void dp_list_add_tail(struct dp_list *head, struct dp_list *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

static inline void dp_list_add_head(struct dp_list *head, struct dp_list *n)
{
    n->next = head->next;
    n->prev = head;
    head->next->prev = n;
    head->next = n;
}

/** Unlink n and leave it self-linked, so unlinking twice is harmless. */
static inline void dp_list_del(struct dp_list *n)
{
    if (n->next == NULL)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#define dp_list_for_each(pos, head) for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

#define dp_list_for_each_safe(pos, tmp, head)                                                      \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); (pos) = (tmp), (tmp) = (pos)->next)

/** Monotonic clock in milliseconds / microseconds. */
uint64_t dp_now_ms(void);
uint64_t dp_now_us(void);

#endif
