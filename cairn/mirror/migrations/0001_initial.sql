-- Cairn mirror schema v1: what an explorer reads. LevelDB stays the source of truth; every
-- row here can be dropped and rebuilt from it (`cairn mirror rebuild`).
-- Hashes and addresses are raw BYTEA (20 or 32 bytes); amounts in wei are NUMERIC(78,0),
-- wide enough for any uint256.

CREATE TABLE blocks (
    number             BIGINT        PRIMARY KEY,
    hash               BYTEA         NOT NULL,
    parent_hash        BYTEA         NOT NULL,
    timestamp          BIGINT        NOT NULL,   -- unix seconds; to_timestamp(timestamp)
    miner              BYTEA         NOT NULL,   -- header coinbase (fee recipient)
    gas_limit          BIGINT        NOT NULL,
    gas_used           BIGINT        NOT NULL,
    base_fee_per_gas   NUMERIC(78,0),
    state_root         BYTEA         NOT NULL,
    transactions_root  BYTEA         NOT NULL,
    receipts_root      BYTEA         NOT NULL,
    logs_bloom         BYTEA         NOT NULL,
    extra_data         BYTEA         NOT NULL,
    size               INTEGER       NOT NULL,   -- bytes of the RLP-encoded block
    transaction_count  INTEGER       NOT NULL,
    log_count          INTEGER       NOT NULL
);
CREATE UNIQUE INDEX blocks_hash_idx ON blocks (hash);
CREATE INDEX blocks_timestamp_idx ON blocks (timestamp);

-- One row per transaction, with its receipt.
CREATE TABLE transactions (
    hash                      BYTEA         PRIMARY KEY,
    block_number              BIGINT        NOT NULL,
    transaction_index         INTEGER       NOT NULL,
    type                      SMALLINT      NOT NULL,   -- 0 legacy, 1 EIP-2930, 2 EIP-1559, 4 EIP-7702
    from_address              BYTEA         NOT NULL,
    to_address                BYTEA,                    -- NULL for contract creation
    value                     NUMERIC(78,0) NOT NULL,
    nonce                     NUMERIC(20,0) NOT NULL,
    gas                       BIGINT        NOT NULL,   -- gas limit the sender set
    gas_price                 NUMERIC(78,0),            -- types 0 and 1
    max_fee_per_gas           NUMERIC(78,0),            -- types 2 and later
    max_priority_fee_per_gas  NUMERIC(78,0),
    input                     BYTEA         NOT NULL,
    status                    SMALLINT      NOT NULL,   -- 1 success, 0 reverted/failed
    gas_used                  BIGINT        NOT NULL,
    cumulative_gas_used       BIGINT        NOT NULL,
    effective_gas_price       NUMERIC(78,0) NOT NULL,
    contract_address          BYTEA,                    -- the created contract, if any
    logs_bloom                BYTEA         NOT NULL,
    log_count                 INTEGER       NOT NULL
);
CREATE UNIQUE INDEX transactions_block_idx ON transactions (block_number, transaction_index);
CREATE INDEX transactions_from_idx ON transactions (from_address, block_number DESC, transaction_index DESC);
CREATE INDEX transactions_to_idx ON transactions (to_address, block_number DESC, transaction_index DESC);
CREATE INDEX transactions_contract_idx ON transactions (contract_address) WHERE contract_address IS NOT NULL;

-- Event logs; log_index counts from 0 within the block, as eth_getLogs reports it.
CREATE TABLE logs (
    block_number       BIGINT   NOT NULL,
    log_index          INTEGER  NOT NULL,
    transaction_hash   BYTEA    NOT NULL,
    transaction_index  INTEGER  NOT NULL,
    address            BYTEA    NOT NULL,
    topic0             BYTEA,
    topic1             BYTEA,
    topic2             BYTEA,
    topic3             BYTEA,
    data               BYTEA    NOT NULL,
    PRIMARY KEY (block_number, log_index)
);
CREATE INDEX logs_address_idx ON logs (address, block_number DESC);
CREATE INDEX logs_topic0_idx ON logs (topic0, block_number DESC);
CREATE INDEX logs_transaction_idx ON logs (transaction_hash);

-- Latest state of every account any mirrored block touched (internal transfers included).
CREATE TABLE accounts (
    address      BYTEA          PRIMARY KEY,
    balance      NUMERIC(78,0)  NOT NULL,
    nonce        NUMERIC(20,0)  NOT NULL,
    is_contract  BOOLEAN        NOT NULL,
    last_block   BIGINT         NOT NULL   -- the last block that touched this account
);
CREATE INDEX accounts_balance_idx ON accounts (balance DESC);

-- One row: what the node knows about its network.
CREATE TABLE network_state (
    id              SMALLINT     PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    chain_id        BIGINT       NOT NULL,
    genesis_hash    BYTEA        NOT NULL,
    mode            TEXT         NOT NULL,   -- sequencer, validator, fullnode
    producers       BYTEA[]      NOT NULL,   -- producer (sequencer/validator) addresses
    head_number     BIGINT       NOT NULL,   -- the node's head, which the mirror may trail
    head_hash       BYTEA        NOT NULL,
    peers           INTEGER      NOT NULL,
    client_version  TEXT         NOT NULL,
    updated_at      TIMESTAMPTZ  NOT NULL DEFAULT now()
);

-- One row: the last block fully written here. Moves in the same transaction as the rows.
CREATE TABLE mirror_cursor (
    id            SMALLINT     PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    block_number  BIGINT       NOT NULL,
    block_hash    BYTEA        NOT NULL,
    updated_at    TIMESTAMPTZ  NOT NULL DEFAULT now()
);
