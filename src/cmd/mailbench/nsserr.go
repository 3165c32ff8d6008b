package main

// nssError is an NSS status other than SUCCESS.
type nssError string

func (e nssError) Error() string { return "getpwnam: NSS status " + string(e) }
