/*
 * Random 4 KiB (or N-byte) preads or pwrites on one file from one thread, timed: the load the FUSE
 * profile in docs/bench-fuse.md ("Where a 4 KiB read goes") was traced around.
 *
 *   cc -O2 -o /tmp/fuse-rr bench/tools/fuse-rr.c
 *   /tmp/fuse-rr <file> <ops> [w] [block bytes]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
int main(int c,char**v){int n=atoi(v[2]);int w=c>3&&v[3][0]=='w';size_t bs=c>4?atol(v[4]):4096;
int fd=open(v[1],w?O_RDWR:O_RDONLY);if(fd<0){perror("open");return 1;}
off_t sz=lseek(fd,0,SEEK_END);char*b=aligned_alloc(4096,bs);for(size_t i=0;i<bs;i++)b[i]=i;
unsigned s=42;double t0=now();for(int i=0;i<n;i++){s=s*1103515245+12345;off_t o=((off_t)(s>>4)%(sz/bs))*bs;
ssize_t r=w?pwrite(fd,b,bs,o):pread(fd,b,bs,o);if(r!=(ssize_t)bs){perror("io");return 1;}}
double t=now()-t0;printf("%s %d ops bs=%zu: %.0f ns/op, %.0f ops/s\n",w?"write":"read",n,bs,t/n,n/t*1e9);return 0;}
