# sdcontainer's exec trampoline for x86_64: the source of TEXT["x86_64"] in
# sdcontainer/trampoline.py (tools/trampoline/assemble prints the bytes; a test compares).
#
#   argv = [NAME, PATH, ARGV0, ARGV1, ...]   ->   execve(PATH, [ARGV0, ARGV1, ...], envp)
#
# It is the last program the host's side runs in a container: whatever the container makes
# the kernel run through /proc/self/exe from here is this sealed copy, never a host binary.
# If execve fails: "NAME: exec PATH: REASON" on stderr (REASON as strerror words it for the
# errors an execve meets, "errno N" for others), exit status 127 for ENOENT, 126 otherwise,
# as a shell. Position-independent, no data but its own text and the stack.

        .text
        .globl  _start
_start:
        mov     (%rsp), %rcx            # argc
        cmp     $3, %rcx
        jb      usage
        mov     8(%rsp), %r14           # NAME = argv[0]: the message's prefix
        mov     16(%rsp), %r13          # PATH = argv[1]
        mov     %r13, %rdi
        lea     24(%rsp), %rsi          # &argv[2]
        lea     16(%rsp,%rcx,8), %rdx   # envp = &argv[argc + 1]
        mov     $59, %eax               # SYS_execve
        syscall
        neg     %eax
        mov     %eax, %r12d             # errno
        sub     $64, %rsp               # room for the digits
        mov     %r14, %rsi
        call    puts
        lea     exec(%rip), %rsi
        call    puts
        mov     %r13, %rsi
        call    puts
        lea     colon(%rip), %rsi
        call    puts
        lea     reasons(%rip), %rsi     # {errno byte, text, NUL}..., 0
1:      movzbl  (%rsi), %eax
        test    %eax, %eax
        jz      3f                      # not in the table
        inc     %rsi
        cmp     %eax, %r12d
        je      4f
2:      lodsb                           # skip this entry's text
        test    %al, %al
        jnz     2b
        jmp     1b
3:      lea     errno(%rip), %rsi
        call    puts
        movb    $0, 63(%rsp)            # errno in decimal, written backwards from the end
        lea     63(%rsp), %rsi
        mov     %r12d, %eax
        mov     $10, %ecx
5:      dec     %rsi
        xor     %edx, %edx
        div     %ecx
        add     $48, %dl                # "0" + digit
        mov     %dl, (%rsi)
        test    %eax, %eax
        jnz     5b
4:      call    puts
        lea     newline(%rip), %rsi
        call    puts
        mov     $126, %edi
        cmp     $2, %r12d               # ENOENT
        jne     6f
        mov     $127, %edi
6:      mov     $231, %eax              # SYS_exit_group
        syscall
usage:                                  # run without a PATH: nothing to do
        mov     $126, %edi
        mov     $231, %eax
        syscall
puts:                                   # write(2, %rsi, strlen(%rsi))
        xor     %edx, %edx
1:      cmpb    $0, (%rsi,%rdx)
        je      2f
        inc     %rdx
        jmp     1b
2:      mov     $2, %edi
        mov     $1, %eax                # SYS_write
        syscall
        ret
exec:   .asciz  ": exec "
colon:  .asciz  ": "
errno:  .asciz  "errno "
newline: .asciz "\n"
reasons:
        .byte   1
        .asciz  "Operation not permitted"
        .byte   2
        .asciz  "No such file or directory"
        .byte   7
        .asciz  "Argument list too long"
        .byte   8
        .asciz  "Exec format error"
        .byte   12
        .asciz  "Cannot allocate memory"
        .byte   13
        .asciz  "Permission denied"
        .byte   20
        .asciz  "Not a directory"
        .byte   21
        .asciz  "Is a directory"
        .byte   26
        .asciz  "Text file busy"
        .byte   40
        .asciz  "Too many levels of symbolic links"
        .byte   0
