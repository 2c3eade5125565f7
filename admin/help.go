package admin

import (
	"bytes"
	"io"
)

// The metrics library writes "# HELP family" with no text (it has no place for one), so the
// /metrics handler fills the text in from this table. A family missing here keeps an empty
// HELP, and TestEveryFamilyHasHelp fails.
var helpTexts = map[string]string{
	// This proxy.
	"ftpsproxy_sessions_active":                          "Client sessions running, by listener.",
	"ftpsproxy_sessions_total":                           "Client sessions accepted, by listener.",
	"ftpsproxy_health_checks_total":                      "Health checks (PROXY v2 LOCAL connections from a trusted proxy), by listener; not sessions.",
	"ftpsproxy_session_duration_seconds":                 "How long client sessions ran, from accept to close.",
	"ftpsproxy_backend_sessions_total":                   "Sessions placed on the backend after a successful login.",
	"ftpsproxy_backend_active_sessions":                  "Sessions currently assigned to the backend.",
	"ftpsproxy_backend_up":                               "1 when the backend is healthy (active checks and passive ejection), 0 when down.",
	"ftpsproxy_pool_panic_total":                         "Sessions that found no healthy backend in the pool and tried them all anyway (panic mode).",
	"ftpsproxy_backend_max_sessions":                     "The backend's max_sessions; 0 is unlimited.",
	"ftpsproxy_backend_admin_state":                      "The administrator's setting of the backend (admin API): 0 enabled, 1 draining, 2 disabled, 3 removed from the config and finishing its sessions.",
	"ftpsproxy_dns_lookup_failures_total":                "DNS lookups of backend host names and pool.srv names that failed or came back empty (the last good answer stays).",
	"ftpsproxy_cluster_up":                               "1 while the [cluster] Redis answers, 0 while the instance runs on local limits only.",
	"ftpsproxy_cluster_outages_total":                    "Times the [cluster] Redis became unreachable.",
	"ftpsproxy_backend_transfer_bytes_total":             "Payload bytes relayed on data connections with the backend, by direction (upload: to the backend).",
	"ftpsproxy_backend_transfer_errors_total":            "Transfers with the backend that failed (not 2xx, or a relay error); client aborts are not errors.",
	"ftpsproxy_logins_total":                             "Login attempts (PASS), by outcome.",
	"ftpsproxy_closed_421_total":                         "Sessions ended with a 421 reply, by cause.",
	"ftpsproxy_data_refused_total":                       "Data connections refused: foreign_peer (passive, from another address) or bounce (PORT/EPRT elsewhere).",
	"ftpsproxy_data_ports_in_use":                        "Passive data ports leased now.",
	"ftpsproxy_data_ports_range_size":                    "Number of ports in data.port_range.",
	"ftpsproxy_data_ports_exhausted_total":               "PASV/EPSV refused with 425 because no port of the range was free.",
	"ftpsproxy_rate_limited_total":                       "Connections refused because their address is banned after failed logins.",
	"ftpsproxy_tls_handshakes_total":                     "TLS handshakes on control and data connections, by side (client, backend) and result.",
	"ftpsproxy_tls_handshake_failures_total":             "Failed TLS handshakes, by side and reason (a fixed set).",
	"ftpsproxy_tls_certificate_expiry_timestamp_seconds": "NotAfter of each certificate presented to clients, as a Unix time, by its first DNS name.",
	"ftpsproxy_transfers_total":                          "Finished data transfers, by direction and result; directory listings count as downloads.",
	"ftpsproxy_transfer_bytes_total":                     "Payload bytes relayed on data connections, by direction.",
	"ftpsproxy_transfer_duration_seconds":                "How long data transfers took, from the data command to the final reply, by direction.",
	"ftpsproxy_transfer_log_errors_total":                "Transfer-log lines that could not be written.",
	"ftpsproxy_directory_lookups_total":                  "User directory steps of logins, by source (file, url, auth) and result (found, not_found, error; allow, deny, error).",
	"ftpsproxy_directory_cache_hits_total":               "Lookup service answers served from the cache instead of a request.",
	"ftpsproxy_reloads_total":                            "Config reloads (SIGHUP), by outcome: ok (applied) or failed (refused, the old config stays).",
	"ftpsproxy_last_reload_timestamp_seconds":            "Unix time of the last applied reload, or of the start when there was none.",
	"ftpsproxy_last_reload_successful":                   "1 when the last reload was applied (or none was tried), 0 when it was refused.",
	"ftpsproxy_start_time_seconds":                       "Unix time the proxy started.",
	"ftpsproxy_build_info":                               "Always 1; the labels name the version, VCS commit and Go version of the binary.",

	// Go runtime (github.com/VictoriaMetrics/metrics, WriteProcessMetrics).
	"go_sched_latencies_seconds":          "Time goroutines spent runnable before running.",
	"go_mutex_wait_seconds_total":         "Time goroutines spent blocked on sync.Mutex and sync.RWMutex.",
	"go_gc_mark_assist_cpu_seconds_total": "CPU time goroutines spent helping the garbage collector mark.",
	"go_gc_cpu_seconds_total":             "CPU time spent by the garbage collector.",
	"go_gc_pauses_seconds":                "Stop-the-world pause latencies of the garbage collector.",
	"go_scavenge_cpu_seconds_total":       "CPU time spent returning memory to the OS.",
	"go_memlimit_bytes":                   "The Go runtime's soft memory limit (GOMEMLIMIT).",
	"go_memstats_alloc_bytes":             "Bytes of allocated heap objects.",
	"go_memstats_alloc_bytes_total":       "Bytes allocated for heap objects since start.",
	"go_memstats_buck_hash_sys_bytes":     "Bytes of memory in profiling bucket hash tables.",
	"go_memstats_frees_total":             "Heap objects freed since start.",
	"go_memstats_gc_cpu_fraction":         "Fraction of CPU time used by the garbage collector since start.",
	"go_memstats_gc_sys_bytes":            "Bytes of memory in garbage collection metadata.",
	"go_memstats_heap_alloc_bytes":        "Bytes of allocated heap objects.",
	"go_memstats_heap_idle_bytes":         "Bytes in idle heap spans.",
	"go_memstats_heap_inuse_bytes":        "Bytes in in-use heap spans.",
	"go_memstats_heap_objects":            "Allocated heap objects.",
	"go_memstats_heap_released_bytes":     "Bytes of physical memory returned to the OS.",
	"go_memstats_heap_sys_bytes":          "Bytes of heap memory obtained from the OS.",
	"go_memstats_last_gc_time_seconds":    "Unix time of the last garbage collection.",
	"go_memstats_lookups_total":           "Pointer lookups performed by the runtime.",
	"go_memstats_mallocs_total":           "Heap objects allocated since start.",
	"go_memstats_mcache_inuse_bytes":      "Bytes of allocated mcache structures.",
	"go_memstats_mcache_sys_bytes":        "Bytes of memory obtained from the OS for mcache structures.",
	"go_memstats_mspan_inuse_bytes":       "Bytes of allocated mspan structures.",
	"go_memstats_mspan_sys_bytes":         "Bytes of memory obtained from the OS for mspan structures.",
	"go_memstats_next_gc_bytes":           "Heap size target of the next garbage collection.",
	"go_memstats_other_sys_bytes":         "Bytes of memory in miscellaneous runtime allocations.",
	"go_memstats_stack_inuse_bytes":       "Bytes in stack spans.",
	"go_memstats_stack_sys_bytes":         "Bytes of stack memory obtained from the OS.",
	"go_memstats_sys_bytes":               "Total bytes of memory obtained from the OS.",
	"go_cgo_calls_count":                  "Calls from Go to C since start.",
	"go_cpu_count":                        "Logical CPUs usable by the process.",
	"go_gc_duration_seconds":              "Garbage collection pause durations.",
	"go_gc_forced_count":                  "Garbage collections forced by the application.",
	"go_gomaxprocs":                       "GOMAXPROCS: threads that may run Go code at once.",
	"go_goroutines":                       "Goroutines that exist now.",
	"go_threads":                          "OS threads created by the runtime.",
	"go_info":                             "Always 1; the label names the Go version.",
	"go_info_ext":                         "Always 1; the labels name the compiler and GOOS/GOARCH.",

	// The process (/proc/self).
	"process_cpu_seconds_system_total":              "CPU time spent in the kernel on behalf of the process.",
	"process_cpu_seconds_total":                     "CPU time of the process, user and system.",
	"process_cpu_seconds_user_total":                "CPU time of the process in user space.",
	"process_major_pagefaults_total":                "Page faults that needed disk I/O.",
	"process_minor_pagefaults_total":                "Page faults served without disk I/O.",
	"process_num_threads":                           "OS threads of the process.",
	"process_resident_memory_bytes":                 "Resident set size (RSS).",
	"process_start_time_seconds":                    "Unix time the process started.",
	"process_virtual_memory_bytes":                  "Virtual memory size.",
	"process_virtual_memory_peak_bytes":             "Peak virtual memory size.",
	"process_resident_memory_peak_bytes":            "Peak resident set size.",
	"process_resident_memory_anon_bytes":            "Resident anonymous memory.",
	"process_resident_memory_file_bytes":            "Resident file-backed memory.",
	"process_resident_memory_shared_bytes":          "Resident shared memory.",
	"process_io_read_bytes_total":                   "Bytes read by the process, including from the page cache.",
	"process_io_written_bytes_total":                "Bytes written by the process, including to the page cache.",
	"process_io_read_syscalls_total":                "Read system calls.",
	"process_io_write_syscalls_total":               "Write system calls.",
	"process_io_storage_read_bytes_total":           "Bytes the process caused to be read from storage.",
	"process_io_storage_written_bytes_total":        "Bytes the process caused to be written to storage.",
	"process_pressure_cpu_waiting_seconds_total":    "Time some of the process's tasks waited for CPU (PSI).",
	"process_pressure_cpu_stalled_seconds_total":    "Time all of the process's tasks waited for CPU (PSI).",
	"process_pressure_io_waiting_seconds_total":     "Time some of the process's tasks waited for I/O (PSI).",
	"process_pressure_io_stalled_seconds_total":     "Time all of the process's tasks waited for I/O (PSI).",
	"process_pressure_memory_waiting_seconds_total": "Time some of the process's tasks waited for memory (PSI).",
	"process_pressure_memory_stalled_seconds_total": "Time all of the process's tasks waited for memory (PSI).",
	"process_open_fds":                              "Open file descriptors: about two per idle session, more during transfers.",
	"process_max_fds":                               "The descriptor limit (RLIMIT_NOFILE); sessions fail when open fds reach it.",
}

// fillHelp copies an exposition from src to w, adding the help text to each empty HELP line.
func fillHelp(w io.Writer, src []byte) {
	var out bytes.Buffer
	out.Grow(len(src) + 4096)
	for len(src) > 0 {
		line, rest, _ := bytes.Cut(src, []byte("\n"))
		src = rest
		out.Write(line)
		if name, ok := bytes.CutPrefix(line, []byte("# HELP ")); ok && bytes.IndexByte(name, ' ') < 0 {
			if text := helpTexts[string(name)]; text != "" {
				out.WriteByte(' ')
				out.WriteString(text)
			}
		}
		out.WriteByte('\n')
	}
	w.Write(out.Bytes())
}
