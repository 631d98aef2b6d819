/*
 * subcmd.h — small one-shot subcommands of ambit-node (for tests and operators):
 *
 *   ambit-node redirect add <netns-path> [--no-ipv6]   install in-pod redirection (dataplane/nft)
 *   ambit-node redirect del <netns-path>               remove it (idempotent)
 */
#ifndef NA_SUBCMD_H
#define NA_SUBCMD_H

/** argv[0] == "redirect". Returns a process exit code. */
int na_subcmd_redirect(int argc, char **argv);

#endif
