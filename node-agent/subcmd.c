/*
 * subcmd.c — `ambit-node redirect add|del`: the same rule builder the CNI plugin uses, so the
 * netns tests install exactly the production rules without a control plane or the plugin.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "netns.h"
#include "nft.h"
#include "subcmd.h"

int na_subcmd_redirect(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "add") != 0 && strcmp(argv[1], "del") != 0)) {
        fprintf(stderr, "usage: ambit-node redirect add|del <netns-path> [--no-ipv6]\n");
        return 2;
    }
    struct dp_nft_pod_opts o;
    dp_nft_pod_opts_init(&o);
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--no-ipv6") == 0) {
            o.ipv6 = false;
        } else {
            fprintf(stderr, "ambit-node redirect: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    int nsfd = -1;
    int ret = dp_netns_open_path(argv[2], &nsfd);
    if (ret < 0) {
        dp_error("node", "cannot open netns", DP_LS("netns", argv[2]), DP_LERR(ret));
        return 1;
    }
    if (strcmp(argv[1], "add") == 0)
        ret = dp_nft_pod_apply_in(nsfd, &o);
    else
        ret = dp_nft_pod_remove_in(nsfd, &o);
    close(nsfd);
    if (ret < 0) {
        dp_error("node", "redirect failed", DP_LS("op", argv[1]), DP_LS("netns", argv[2]),
                 DP_LERR(ret));
        return 1;
    }
    return 0;
}
