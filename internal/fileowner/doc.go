// Package fileowner reads the user and group that own a file, from the
// os.FileInfo a Stat returned: where the system keeps them as ids (unix),
// and reports them unknown elsewhere (Windows keeps an owner SID and ACLs,
// which the mode bits do not describe). The sidecar judges whether a
// passphrase file is private by its owner, and durable.ReplaceFile keeps
// the owner of a file root replaces.
package fileowner
