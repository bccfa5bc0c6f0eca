-- CRM demo schema (MariaDB / MySQL). Loaded once into the local `crm` database by `tidemark up`,
-- and by docker-compose into the production-shaped stack.
CREATE TABLE accounts (
    id                BIGINT AUTO_INCREMENT PRIMARY KEY,
    name              VARCHAR(200) NOT NULL,
    domain            VARCHAR(200),
    industry          VARCHAR(100),
    owner             VARCHAR(100),
    stage             VARCHAR(32)  NOT NULL DEFAULT 'prospect',
    tax_id            VARCHAR(32),
    country           CHAR(2),
    erp_customer_id   BIGINT,
    lifecycle_status  VARCHAR(32),
    credit_status     VARCHAR(32),
    tidemark_version  BIGINT,       -- set only by Tidemark's write-back: marks its own writes (echo suppression)
    updated_at        TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE contacts (
    id          BIGINT AUTO_INCREMENT PRIMARY KEY,
    account_id  BIGINT       NOT NULL,
    first_name  VARCHAR(100),
    last_name   VARCHAR(100),
    email       VARCHAR(200),
    phone       VARCHAR(50),
    title       VARCHAR(100),
    updated_at  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    CONSTRAINT fk_contacts_account FOREIGN KEY (account_id) REFERENCES accounts (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE opportunities (
    id          BIGINT AUTO_INCREMENT PRIMARY KEY,
    account_id  BIGINT         NOT NULL,
    name        VARCHAR(200)   NOT NULL,
    stage       VARCHAR(32)    NOT NULL DEFAULT 'open',
    amount      DECIMAL(14, 2),
    close_date  DATE,
    updated_at  TIMESTAMP(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    CONSTRAINT fk_opportunities_account FOREIGN KEY (account_id) REFERENCES accounts (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
