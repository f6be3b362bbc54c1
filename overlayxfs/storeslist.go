package overlayxfs

import "errors"

// StoresListPath is the root-owned list of quota stores, one absolute path
// a line: init-store adds a store to it (RegisterStore), delete-store
// removes it (UnregisterStore), and the setuid helper taproot-quota acts
// only on the stores it lists. The helper keeps its own copy of this
// constant (quotahelper.StoresListPath) so that the taproot binary does not
// link the helper's package; a quotahelper test pins that both programs
// name the same file.
const StoresListPath = "/etc/taproot/stores"

// ErrSharedFilesystem refuses a quota store on a filesystem that already
// holds a listed store of another owner: the owner of a file can give it
// any project ID, so XFS project quotas cannot keep two owners apart on one
// filesystem. The helper refuses the same (quotahelper.ErrSharedFilesystem,
// pinned to the same text, which the UML tests read from both programs).
var ErrSharedFilesystem = errors.New("one filesystem holds the quota stores of two owners: the owner of a file can give it any project ID, so each can fill the other's limits; give each owner its own XFS (taproot init-store --store-size-bytes makes one)")
