// Package durable makes file system changes survive a crash: a file's
// bytes, and the names created, renamed or removed in a directory, are on
// disk only once they are fsynced. The snapshot directory, the keyring,
// the client's downloads, the fs blob store and the homes emrchaind init
// and testnet write share these few steps.
package durable
