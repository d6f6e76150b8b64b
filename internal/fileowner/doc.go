// Package fileowner reads the user and group that own a file, from the
// os.FileInfo a Stat returned: where the system keeps them as ids (unix),
// and reports them unknown elsewhere (Windows keeps an owner SID and ACLs,
// which the mode bits do not describe); and gives a file root writes the
// owner of another (MatchOwner). The sidecar judges whether a passphrase
// file is private by its owner; durable.ReplaceFile keeps the owner of a
// file root replaces, and filelock gives a lock file root creates the
// owner of its directory.
package fileowner
