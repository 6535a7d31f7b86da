package main

import "errors"

var errKeyStoreNotWired = errors.New("security.key_store: key store loading is not wired yet")
