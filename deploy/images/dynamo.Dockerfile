# The dynamo image built from a binary made beforehand on the host
# (deploy/images/build.sh): no base image to pull, so it builds where no
# registry answers. Its runtime settings mirror the final stage of the
# repository's Dockerfile; e2e/containers checks that the two agree.
# Build context: the static binary `dynamo` and an empty directory `data`.
FROM scratch
COPY dynamo /dynamo
COPY --chown=65532:65532 data /data
USER 65532:65532
VOLUME /data
ENV DYNAMO_DATA_DIR=/data \
    DYNAMO_LISTEN=0.0.0.0:8080 \
    DYNAMO_PEER_LISTEN=0.0.0.0:8081 \
    DYNAMO_GOSSIP_LISTEN=0.0.0.0:7946
EXPOSE 8080 8081 7946/tcp 7946/udp
# No shell or curl in the image: the binary probes /readyz itself.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 CMD ["/dynamo", "probe"]
ENTRYPOINT ["/dynamo"]
