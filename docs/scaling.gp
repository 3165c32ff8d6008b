# How correo's costs grow with users and mailbox size: the points of
# make scale-bench (internal/benchfig.RecordScale, one "series x y" per
# line), four panels in one PNG:
#
#   gnuplot -e "data='docs/scaling.dat'" docs/scaling.gp > docs/scaling.png
if (!exists("data")) data = 'docs/scaling.dat'
s(name) = sprintf("< awk '$1==\"%s\"' %s | sort -k2 -g", name, data)

set terminal pngcairo size 1400,1000 font ",11" noenhanced
set multiplot layout 2,2 title "correo: cost against scale (make scale-bench; one run, 2-core VM)"
set logscale x
set grid
set key top left
set format x "%.0s%c"

set title "passwdd lookups over UDP, 8 clients"
set xlabel "users in the directory"
set ylabel "latency (µs)"
set logscale y
plot s("passwd_lookup_p50_us") using 2:3 with linespoints title "p50", \
     s("passwd_lookup_p99_us") using 2:3 with linespoints title "p99"

set title "getpwnam through libnss_correo (and glibc files)"
set ylabel "median latency (µs)"
plot s("nss_cached_median_us") using 2:3 with linespoints title "correo, cached in nssd", \
     s("nss_cached_p99_us") using 2:3 with linespoints title "correo, cached, p99", \
     s("nss_miss_median_us") using 2:3 with linespoints title "correo, nssd cache miss", \
     s("nss_files_median_us") using 2:3 with linespoints title "glibc files"

set title "passwdd: loading the directory"
set ylabel "seconds / MB"
plot s("passwd_import_s") using 2:3 with linespoints title "import (s)", \
     s("passwd_restart_s") using 2:3 with linespoints title "restart from snapshot (s)", \
     s("passwd_rss_mb") using 2:3 with linespoints title "RSS (MB)"

set title "a storage host against mailbox size (2 KB messages)"
set xlabel "messages in the mailbox"
set ylabel "median latency (ms)"
plot s("pop3_login_list_ms") using 2:3 with linespoints title "pop3d USER/PASS+STAT+LIST", \
     s("imap_login_select_ms") using 2:3 with linespoints title "imapd LOGIN+SELECT", \
     s("lmtp_delivery_ms") using 2:3 with linespoints title "pdeliveryd: one more delivery", \
     s("mailbox_usage_ms") using 2:3 with linespoints title "usage scan (quota)"
unset multiplot
