// Package rotation holds the login-token rotation protocol's decisions: when the next rotation
// is due, what a refresh's failure means for the login token, when an unfinished refresh may be
// settled, what the status then says, and the operator's messages. It is pure: no Vault SDK, no
// network, no clock of its own. The root package drives it (locks, storage, WAL, calls to
// inabit) and ARCHITECTURE.md shows the protocol on one page.
//
// inabit mints the new login token and kills the old one in one call, so every decision here
// keeps one rule: only inabit's own answer decides anything at once; a refresh whose answer
// never came may still be applied, so it is settled only after the grace has passed on a clock
// that cannot step (the node's monotonic clock).
package rotation
