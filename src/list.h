/* An intrusive, circular, doubly linked list: each element embeds a snakepit_link, and a
 * list is a sentinel link (its head).  The registry keeps its shard sets, locks and each
 * set's slots this way.  Every change, and every read of a link that is in a list, happens
 * under the registry lock: removing an element rewrites its neighbours' links. */
#ifndef SNAKEPIT_LIST_H
#define SNAKEPIT_LIST_H

#include <assert.h>
#include <stddef.h>

typedef struct snakepit_link {
    struct snakepit_link *prev, *next;
} snakepit_link;

/* The element that embeds `link` as `member`. */
#define SNAKEPIT_CONTAINER_OF(link, type, member) \
    ((type *)((char *)(link) - offsetof(type, member)))

/* Every element of `head`; removing the current one while iterating is allowed. */
#define SNAKEPIT_LIST_FOR_EACH(node, head)                                              \
    for (snakepit_link *node = (head)->next, *node##_next = node->next; node != (head); \
         node = node##_next, node##_next = node->next)

static inline void
snakepit_list_init(snakepit_link *head)
{
    head->prev = head->next = head;
}

static inline int
snakepit_list_empty(const snakepit_link *head)
{
    return head->next == head;
}

/* Whether `link` is in a list (links are zeroed, or reset by snakepit_list_remove, when not). */
static inline int
snakepit_list_linked(const snakepit_link *link)
{
    return link->next != NULL;
}

static inline void
snakepit_list_push(snakepit_link *head, snakepit_link *link)
{
    assert(!snakepit_list_linked(link));
    link->prev = head;
    link->next = head->next;
    head->next->prev = link;
    head->next = link;
}

static inline void
snakepit_list_remove(snakepit_link *link)
{
    assert(snakepit_list_linked(link));
    link->prev->next = link->next;
    link->next->prev = link->prev;
    link->prev = link->next = NULL;
}

#endif /* SNAKEPIT_LIST_H */
