package main

import "correo/src/pop3"

func encodePlain(u, p string) string { return pop3.EncodePlain(u, p) }
