// Package miniotest runs a real MinIO server for tests: the binary `make
// test` installs into ./bin (or the one EMRCHAIN_MINIO_BIN names), on
// 127.0.0.1, with its data in a temporary directory, stopped when the test
// ends.
//
// Start skips the calling test, with a message saying how to install the
// server, when the binary is not there.
package miniotest
